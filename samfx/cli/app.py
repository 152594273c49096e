"""The typer application every command module registers on, and the helpers they share (one-line
errors, JSON output). Module-level imports stay light: `samfx --help` must not import torch."""
from __future__ import annotations

import json
import os
import sys
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
    """Print `err` as one line on stderr and exit with `code`. The line starts with ``error: ``, except
    when called while handling a KeyboardInterrupt (Ctrl-C or SIGTERM stopping training,
    samfx.engine.train.interrupt): a requested stop is not an error, so its line is printed as it is."""
    debug_traceback(err)
    stopped = isinstance(sys.exc_info()[1], KeyboardInterrupt)
    typer.echo(str(err) if stopped else f"error: {err}", err=True)
    raise typer.Exit(code)


def debug_traceback(err: BaseException) -> None:
    """Under SAMFX_DEBUG=1, the traceback behind a one-line error (plugin failures keep it as the cause)."""
    if os.environ.get("SAMFX_DEBUG") == "1":
        traceback.print_exception(type(err), err, err.__traceback__)


def emit_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))
