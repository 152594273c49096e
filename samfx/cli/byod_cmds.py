"""`samfx data folder | dicom | video`: bring your own images, DICOM cine loops and videos (docs/data.md).

Heavy imports (numpy, h5py, pydicom, av) stay inside the commands so `samfx --help` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from samfx.cli.app import data_app, fail
from samfx.cli.data_cmds import FORCE_OPTION as _FORCE
from samfx.cli.data_cmds import JSON_OPTION as _JSON
from samfx.cli.data_cmds import OUT_OPTION as _OUT
from samfx.cli.data_cmds import print_report as _report
from samfx.contracts.errors import DataError, SamfxError

_SKIP = typer.Option(False, "--skip-bad", help="Skip and report unreadable or inconsistent files.")
_LABELS = typer.Option(None, "--labels", help="Mask values to class ids, e.g. 255=1 or 0,128,255=0,1,2 (repeatable).")
_NAMES = typer.Option(None, "--class-names", help="Comma-separated names of classes 1..K, e.g. LV,MYO,LA.")
_SPACING = typer.Option(None, "--spacing", help="mm per pixel: one value, or ROW,COL.")
_PATIENT = typer.Option(None, "--patient-regex",
                        help="Regex on the file name giving the patient (first group), so splits keep patients whole.")
_SPLIT = typer.Option("0.7,0.1,0.2", "--split", help="train,val,test fractions of patients (seeded).")
_SEED = typer.Option(0, "--seed", help="Seed of the split.")


def parse_spacing(text: str | None) -> tuple[float, float] | None:
    """``"0.3"`` -> (0.3, 0.3); ``"0.3,0.25"`` -> (0.3, 0.25) mm per pixel (row, col)."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise DataError(f"--spacing {text!r}: expected mm per pixel > 0, one value or ROW,COL, e.g. --spacing 0.3")
    return (values[0], values[-1])


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise DataError(f"--class-names {text!r}: expected comma-separated names, e.g. --class-names LV,MYO,LA")
    return names


@data_app.command()
def folder(images: Path = typer.Argument(..., help="Folder of images (PNG, JPEG, TIFF, BMP, NIfTI)."),
           masks: Path = typer.Argument(..., help="Folder of masks (may be IMAGES, with --mask-suffix)."),
           out: Path = _OUT,
           mask_suffix: Optional[str] = typer.Option(None, "--mask-suffix",
                                                     help="Mask stem = image stem + this, e.g. _mask."),
           mask_pattern: Optional[str] = typer.Option(None, "--mask-pattern",
                                                      help="Mask stem template with {stem}, e.g. 'gt_{stem}'."),
           labels: Optional[list[str]] = _LABELS, class_names: Optional[str] = _NAMES,
           spacing: Optional[str] = typer.Option(None, "--spacing",
                                                 help="mm per pixel: one value, or ROW,COL (default: NIfTI header)."),
           patient_regex: Optional[str] = _PATIENT, split: str = _SPLIT,
           split_list: Optional[list[str]] = typer.Option(None, "--split-list",
                                                          help="NAME=FILE: names (file stems or patients) of a "
                                                               "split, one a line; replaces --split (repeatable)."),
           seed: int = _SEED, skip_bad: bool = _SKIP, force: bool = _FORCE, as_json: bool = _JSON) -> None:
    """Import your own image/mask folders, paired by file stem."""
    from samfx.data.importers.folder import FolderOptions, import_folder
    from samfx.data.importers.grouping import PatientRule, parse_ratios, read_split_lists
    from samfx.data.importers.labelmap import build_label_map

    try:
        if mask_suffix is not None and mask_pattern is not None:
            raise DataError("--mask-suffix and --mask-pattern: give one (a suffix S is the pattern '{stem}S')")
        options = FolderOptions(
            labels=build_label_map(labels, _names(class_names)),
            mask_pattern=mask_pattern or "{stem}" + (mask_suffix or ""), spacing=parse_spacing(spacing),
            patients=PatientRule(patient_regex), ratios=parse_ratios(split),
            split_lists=read_split_lists(split_list or []), seed=seed)
        report = import_folder(images, masks, out, options, skip_bad=skip_bad, show_progress=not as_json,
                               force=force)
    except SamfxError as exc:
        fail(exc)
    _report(report, as_json)


@data_app.command()
def dicom(inputs: list[Path] = typer.Argument(..., help="DICOM files or folders (searched at any depth)."),
          out: Path = _OUT,
          class_names: Optional[str] = typer.Option("LV", "--class-names",
                                                    help="Classes the store declares (a model's, e.g. LV,MYO,LA)."),
          keep_ids: bool = typer.Option(False, "--keep-ids", help="Store PatientID / StudyInstanceUID in clear."),
          salt: str = typer.Option("", "--salt", help="Secret prepended to IDs before hashing."),
          crop: bool = typer.Option(True, "--crop/--no-crop", help="Crop to the Ultrasound Region bounds."),
          sector: bool = typer.Option(True, "--sector/--no-sector", help="Blank pixels outside the scan sector."),
          fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate, replacing the files' timing."),
          skip_bad: bool = _SKIP, force: bool = _FORCE, as_json: bool = _JSON) -> None:
    """Import ultrasound DICOM (single frames, multi-frame cine) as unlabeled sequences for predict."""
    from samfx.data.importers.dicom import import_dicom

    try:
        report = import_dicom(list(inputs), out, class_names=_names(class_names), keep_ids=keep_ids, salt=salt,
                              crop=crop, sector=sector, fps=fps, skip_bad=skip_bad, show_progress=not as_json,
                              force=force)
    except SamfxError as exc:
        fail(exc)
    _report(report, as_json)


@data_app.command()
def video(files: list[Path] = typer.Argument(..., help="Video files (MP4, AVI, ...)."),
          out: Path = _OUT,
          masks: Optional[Path] = typer.Option(None, "--masks",
                                               help="Folder with MASKS/<video stem>/<frame number>.png masks."),
          fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate (default: the video's)."),
          spacing: Optional[str] = _SPACING, labels: Optional[list[str]] = _LABELS,
          class_names: Optional[str] = _NAMES, patient_regex: Optional[str] = _PATIENT, split: str = _SPLIT,
          seed: int = _SEED, skip_bad: bool = _SKIP, force: bool = _FORCE, as_json: bool = _JSON) -> None:
    """Import videos as sequences, with optional per-frame masks."""
    from samfx.data.importers.grouping import PatientRule, parse_ratios
    from samfx.data.importers.labelmap import build_label_map
    from samfx.data.importers.video import VideoOptions, import_videos

    try:
        if fps is not None and not fps > 0:
            raise DataError(f"--fps {fps}: must be a positive frame rate")
        options = VideoOptions(labels=build_label_map(labels, _names(class_names)),
                               masks=masks.expanduser() if masks else None, fps=fps, spacing=parse_spacing(spacing),
                               patients=PatientRule(patient_regex), ratios=parse_ratios(split), seed=seed)
        report = import_videos(list(files), out, options, skip_bad=skip_bad, show_progress=not as_json, force=force)
    except SamfxError as exc:
        fail(exc)
    _report(report, as_json)
