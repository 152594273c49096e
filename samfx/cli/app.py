"""The typer application every command module registers on, and the helpers they share (one-line
errors, JSON output). Module-level imports stay light: `samfx --help` must not import torch."""
from __future__ import annotations

import json
import os
import traceback

import typer

app = typer.Typer(
    name="samfx",
    help="Segment-Anything variants for ultrasound: train, evaluate and compose models from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Create and import datasets into samfx's HDF5 store.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def fail(err: Exception, code: int = 2) -> None:
    debug_traceback(err)
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code)


def debug_traceback(err: BaseException) -> None:
    """Under SAMFX_DEBUG=1, the traceback behind a one-line error (plugin failures keep it as the cause)."""
    if os.environ.get("SAMFX_DEBUG") == "1":
        traceback.print_exception(type(err), err, err.__traceback__)


def emit_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))
