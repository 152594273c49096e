"""`samfx list-plugins`, `samfx show` and `samfx doctor`: what is installed and what a recipe builds."""
from __future__ import annotations

from typing import Optional

import typer

from samfx.cli.app import app, emit_json, fail
from samfx.cli.doctor import collect
from samfx.cli.show_sites import print_sites
from samfx.contracts.errors import SamfxError


@app.command("list-plugins")
def list_plugins(kind: Optional[str] = typer.Option(None, "--kind", help="Only components of this kind."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List plugins, their status and the components they register."""
    from samfx.contracts.plugins import PluginLoadError, load_plugins
    from samfx.contracts.registry import KINDS

    if kind is not None and kind not in KINDS:
        fail(SamfxError(f"--kind: unknown kind '{kind}'; kinds are: {', '.join(KINDS)}"))
    try:
        plugins = load_plugins()
    except PluginLoadError as exc:
        fail(exc, code=1)
    rows = []
    for info in plugins.infos:
        row = info.to_json()
        if kind is not None:  # plugins with none of that kind are left out; a failed or disabled one may have some
            row["components"] = {k: v for k, v in row["components"].items() if k == kind}
            if not row["components"] and row["status"] == "ok":
                continue
        rows.append(row)
    if as_json:
        emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="samfx plugins")
    for col in ("plugin", "version", "status", "components"):
        table.add_column(col)
    for row in rows:
        comps = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(row["components"].items()))
        status = {"ok": "[green]ok[/]", "failed": "[red]failed[/]", "disabled": "[yellow]disabled[/]"}[row["status"]]
        table.add_row(row["name"], row["version"], status, comps if row["status"] != "failed" else row["error"])
    Console().print(table)


@app.command()
def show(recipe: str = typer.Argument(..., help="Recipe YAML file."),
         overrides: Optional[list[str]] = typer.Argument(None, help="key.path=value overrides."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON."),
         sites: bool = typer.Option(False, "--sites", help="Only the encoder's adapter sites."),
         check: bool = typer.Option(True, "--check/--no-check", help="Run one forward of a dummy batch.")) -> None:
    """Resolve a recipe and summarise the model: parameters total / trainable per component and stage."""
    from samfx.model.summary import summarize

    try:
        report = summarize(recipe, overrides or [], check)
    except SamfxError as exc:
        fail(exc)
    if sites:
        print_sites(report["sites"], as_json)
        return
    if as_json:
        emit_json(report)
        return
    import yaml
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(yaml.safe_dump(report["recipe"], sort_keys=False))
    table = Table(title="parameters")
    for col in ("component", "total", "trainable"):
        table.add_column(col, justify="right" if col != "component" else "left")
    for name, p in report["params"]["by_component"].items():
        table.add_row(name, f"{p['total']:,}", f"{p['trainable']:,}")
    table.add_row("[b]model[/]", f"{report['params']['total']:,}", f"{report['params']['trainable']:,}")
    console.print(table)
    for st in report["stages"]:
        steps = f", at most {st['max_steps']} steps" if st["max_steps"] is not None else ""
        console.print(f"stage [b]{st['name']}[/]: {st['params']['trainable']:,} trainable parameters, "
                      f"{st['epochs']} epoch(s){steps}")
    console.print("prompt schedules (clip frames each prompt prompts): "
                  + ", ".join(f"{k} {v}" for k, v in report["prompt_schedules"].items()))


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Versions, torch / CUDA status and plugin load errors with tracebacks."""
    report = collect()
    if as_json:
        emit_json(report)
        return
    for key, value in report.items():
        if key == "plugins":
            continue
        typer.echo(f"{key:>14}: {value}")
    for p in report["plugins"]:
        typer.echo(f"plugin {p['name']} {p['version']}: {p['status']}")
        if p.get("traceback"):
            typer.echo(p["traceback"])
