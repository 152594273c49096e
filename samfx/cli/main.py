"""`samfx` entry point: every command module registered on the app, errors as one line.
Keep module-level imports light: `samfx --help` must not import torch."""
from __future__ import annotations

import sys

import typer

from samfx.cli import (  # noqa: F401  (each module registers its commands on `app` / `data_app`)
    annotate_cmds,
    bench_cmds,
    byod_cmds,
    ckpt_cmds,
    data_cmds,
    data_import_cmds,
    describe_cmds,
    export_cmds,
    info_cmds,
    report_cmds,
    run_cmds,
)
from samfx.cli.app import app, debug_traceback
from samfx.contracts.errors import SamfxError


def main() -> None:
    try:
        app()
    except SamfxError as exc:  # any command: one clean line
        debug_traceback(exc)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
