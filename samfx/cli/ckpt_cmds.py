"""`samfx inspect | convert`: identify a weights file and move it between layouts (torch imported inside)."""
from __future__ import annotations

from typing import Optional

import typer

from samfx.cli.app import app, emit_json, fail
from samfx.contracts.errors import SamfxError


@app.command()
def inspect(file: str = typer.Argument(..., help="A .pt/.pth/.safetensors weights file."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What a checkpoint is (format, model size, components) and the command that loads it."""
    from samfx.checkpoints.inspect import inspect_checkpoint

    try:
        report = inspect_checkpoint(file)
    except SamfxError as exc:
        fail(exc)
    if as_json:
        emit_json(report)
        return
    typer.echo(f"file:       {report['file']}")
    typer.echo(f"format:     {report['format']}")
    typer.echo(f"model size: {report['model_size']}")
    for name, part in report["components"].items():
        typer.echo(f"component:  {name}: {part['tensors']} tensors, {part['values']:,} values")
    typer.echo(f"recipe:     {report['recipe']}")
    typer.echo(f"load with:  {report['load_with']}")
    if report.get("note"):
        typer.echo(f"note:       {report['note']}")


@app.command()
def convert(src: str = typer.Argument(..., help="Weights file to convert."),
            overrides: Optional[list[str]] = typer.Argument(None, help="key.path=value overrides of --recipe."),
            to: str = typer.Option(..., "--to", help="Target layout: samfx or a plugin's (a wrong name lists them)."),
            out: str = typer.Option(..., "--out", help="File to write (.safetensors, else torch.save)."),
            recipe: Optional[str] = typer.Option(None, "--recipe", help="Recipe that loads SRC (not needed for "
                                                                         "samfx checkpoints)."),
            drop: Optional[list[str]] = typer.Option(None, "--drop", help="Glob of SRC keys to leave out "
                                                                          "(repeatable), e.g. 'memory.*'.")) -> None:
    """Read SRC into a samfx model and write it in another layout (docs/checkpoints.md)."""
    from samfx.deploy.convert import convert as run_convert

    try:
        written = run_convert(src, to, out, recipe=recipe, overrides=overrides or [], drop=drop or [])
    except SamfxError as exc:
        fail(exc)
    typer.echo(str(written))
