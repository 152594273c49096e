"""`samfx report RUN`: the run's HTML report (samfx.report; docs/report.md)."""
from __future__ import annotations

from typing import Optional

import typer

from samfx.cli.app import app, fail
from samfx.contracts.errors import SamfxError


@app.command()
def report(run: str = typer.Argument(..., help="Run folder that `samfx train` wrote and `samfx eval` evaluated."),
           out: Optional[str] = typer.Option(None, "--out", help="HTML file to write "
                                             "(default: RUN/report-<split>[-<prompt>].html)."),
           split: Optional[str] = typer.Option(None, "--split", help="Which evaluation (eval-<split>.json) to "
                                               "report (default: the only one, else eval.split's)."),
           prompt: Optional[list[str]] = typer.Option(None, "--prompt", help="Which prompt generator's "
                                                      "evaluation (eval-<split>-<prompt>.json) to report (default: "
                                                      "the newest); repeat it, or `all`, for one page comparing "
                                                      "several."),
           device: str = typer.Option("cpu", "--device", help="Where the overlay images are re-segmented.")) -> None:
    """One self-contained HTML page: evaluation with confidence intervals, worst/best images, curves, recipe.

    The run must have been evaluated (`samfx eval RUN --report` evaluates and writes this page in one go)."""
    from samfx import api

    try:
        path = api.report(run, split=split, out=out, device=device, prompt=prompt or None)
    except SamfxError as exc:
        fail(exc)
    typer.echo(f"html report: {path}")
