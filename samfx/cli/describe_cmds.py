"""`samfx describe`: a component's options (torch-free: factories are not imported)."""
from __future__ import annotations

import typer

from samfx.cli.app import app, emit_json, fail
from samfx.contracts.errors import SamfxError


@app.command()
def describe(component: str = typer.Argument(..., help="KIND/NAME, e.g. prompt_generator/clicks or "
                                                        "adapter/msff/msff."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A component's recipe keys (types, defaults), its plugin and its documentation."""
    from samfx.contracts.describe import describe as describe_component
    from samfx.contracts.plugins import get_registry

    try:
        report = describe_component(get_registry(), component)
    except SamfxError as exc:
        fail(exc)
    if as_json:
        emit_json(report)
        return
    typer.echo(f"{report['kind']} {report['qualname']} (plugin {report['plugin']})")
    for text in (report["description"], report["doc"]):
        if text:
            typer.echo(f"  {text}".replace("\n", "\n  "))
    if not report["fields"]:
        typer.echo("  no options")
    for f in report["fields"]:
        bounds = f"  [{f['range']}]" if f.get("range") else ""
        typer.echo(f"  {f['name']}: {f['type']} = {f['default']!r}{bounds}" + (f"  # {f['help']}" if f["help"] else ""))
