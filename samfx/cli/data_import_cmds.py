"""`samfx data busi|echonet-pediatric`: importers of public datasets beyond CAMUS/US30K/EchoNet
(docs/data.md "Importers"). Heavy imports stay inside the commands so `samfx --help` stays fast."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from samfx.cli.app import data_app, fail
from samfx.cli.data_cmds import FORCE_OPTION as _FORCE
from samfx.cli.data_cmds import JSON_OPTION as _JSON
from samfx.cli.data_cmds import OUT_OPTION as _OUT
from samfx.cli.data_cmds import print_report as _print
from samfx.contracts.errors import SamfxError

_SKIP = typer.Option(False, "--skip-bad", help="Skip and report unreadable files instead of stopping.")


@data_app.command()
def busi(root: Path = typer.Argument(..., help="BUSI folder (Dataset_BUSI_with_GT/ or the folder holding it)."),
         out: Path = _OUT,
         seed: int = typer.Option(0, "--seed", help="Seed of the 70/10/20 split (drawn within each category)."),
         skip_bad: bool = _SKIP, force: bool = _FORCE, as_json: bool = _JSON) -> None:
    """Import BUSI as distributed: benign/malignant/normal PNGs, extra _mask_<k> masks merged."""
    from samfx.data.importers.busi import import_busi

    try:
        report = import_busi(root, out, seed=seed, skip_bad=skip_bad, show_progress=not as_json, force=force)
    except SamfxError as exc:
        fail(exc)
    _print(report, as_json)


@data_app.command("echonet-pediatric")
def echonet_pediatric(root: Path = typer.Argument(..., help="EchoNet-Pediatric folder (holding A4C/ and PSAX/)."),
                      out: Path = _OUT,
                      val_fold: int = typer.Option(1, "--val-fold", help="Fold (Split column) used as val."),
                      test_fold: int = typer.Option(0, "--test-fold", help="Fold (Split column) used as test."),
                      limit: Optional[int] = typer.Option(None, "--limit",
                                                          help="Import only the first N videos per view."),
                      skip_bad: bool = _SKIP, force: bool = _FORCE, as_json: bool = _JSON) -> None:
    """Import EchoNet-Pediatric (A4C and PSAX): AVIs with LV masks on the traced frames, EF, folds."""
    from samfx.data.importers.echonet_pediatric import import_echonet_pediatric

    try:
        report = import_echonet_pediatric(root, out, val_fold=val_fold, test_fold=test_fold, limit=limit,
                                          skip_bad=skip_bad, show_progress=not as_json, force=force)
    except SamfxError as exc:
        fail(exc)
    _print(report, as_json)
