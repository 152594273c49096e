"""Import CAMUS into a samfx store: the 2023 NIfTI release here, the 2019 MetaImage release in
samfx.data.importers.camus_mhd (`import_camus` detects which one ROOT holds).

Layout: ``ROOT/database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_{ED,ES}[_gt].nii.gz``,
``..._half_sequence[_gt].nii.gz``, ``Info_{2CH,4CH}.cfg`` and
``ROOT/database_split/subgroup_{training,validation,testing}.txt``. ROOT may also be the
``database_nifti`` folder itself. Labels: 1 LV cavity, 2 myocardium, 3 LA.

Axis order: nibabel returns CAMUS arrays as (x, y[, t]) = (columns, rows[, frames]); the store keeps
(rows, cols) so images are transposed, and spacing (row, col) = (zooms[1], zooms[0]) in mm.
ED/ES images become samples (phase "ED"/"ES"); half sequences become sequences whose ED/ES
indexes come from the cfg (1-based), every frame labeled when the ``_gt`` sequence exists.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.images import read_nifti, to_label, to_uint8
from samfx.data.importers.camus_layout import CLASS_NAMES, CLASSES, SPLIT_FILES, VIEWS, read_cfg
from samfx.data.importers.camus_mhd import import_camus_mhd, is_mhd_release
from samfx.data.importers.common import ImportReport, read_lines
from samfx.data.outfile import check_out
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter, split_patients


def _base(root: Path) -> tuple[Path, Path]:
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: CAMUS folder not found; pass the folder holding database_nifti/ (2023 "
                        f"release) or training/ and testing/ (2019 release)")
    nifti = root / "database_nifti" if (root / "database_nifti").is_dir() else root
    return nifti, (nifti.parent if nifti.name == "database_nifti" else root) / "database_split"


def import_camus(root: str | Path, out: str | Path, *, seed: int = 0, sequences: bool = True,
                 skip_bad: bool = False, show_progress: bool = False, force: bool = False) -> ImportReport:
    """Import the CAMUS folder `root` into the store `out`; returns an :class:`ImportReport`
    (an existing `out` is replaced only with `force` and only when it is a samfx store)."""
    check_out(Path(out).expanduser(), force)  # before any reading
    nifti, split_dir = _base(Path(root))
    if nifti.name != "database_nifti" and is_mhd_release(nifti):
        return import_camus_mhd(nifti, out, seed=seed, sequences=sequences, skip_bad=skip_bad,
                                show_progress=show_progress, force=force)
    patients = sorted(p for p in nifti.iterdir() if p.is_dir() and re.fullmatch(r"patient\d+", p.name))
    if not patients:
        raise DataError(f"{nifti}: no patientNNNN folders; expected a CAMUS layout: "
                        f"database_nifti/patientNNNN/patientNNNN_2CH_ED.nii.gz (2023 release) or "
                        f"training/patientNNNN/patientNNNN_2CH_ED.mhd (2019 release)")
    report = ImportReport(str(out), f"camus:{nifti}")
    counts = dict(patients=0, images=0, sequences=0)
    with StoreWriter(out, CLASSES, CLASS_NAMES, source="camus", description=f"CAMUS from {nifti}",
                     force=force) as w, \
            progress_bar(len(patients), "importing CAMUS", show_progress) as advance:
        imported = []
        for pdir in patients:
            n_before = counts["images"] + counts["sequences"]
            for view in VIEWS:
                _import_view(w, pdir, view, sequences, counts, report, skip_bad)
            if counts["images"] + counts["sequences"] > n_before:
                imported.append(pdir.name)
                counts["patients"] += 1
            advance()
        if not imported:
            raise DataError(f"{nifti}: no CAMUS image with its _gt file was found; check the layout")
        _splits(w, split_dir, imported, seed, report)
    report.counts = counts
    return report.finish()


def _import_view(w: StoreWriter, pdir: Path, view: str, sequences: bool, counts: dict, report: ImportReport,
                 skip_bad: bool) -> None:
    """One view of one patient: its ED and ES images and its half sequence (each skipped alone)."""
    cfg_path = pdir / f"Info_{view}.cfg"
    cfg = read_cfg(cfg_path) if cfg_path.is_file() else {}
    extra = {k: v for k, v in cfg.items() if k not in ("cfg_ed", "cfg_es")}
    for phase in ("ED", "ES"):
        report.attempt(skip_bad, lambda: _image(w, pdir, view, phase, extra, counts, report))
    if sequences:
        report.attempt(skip_bad, lambda: _sequence(w, pdir, view, cfg, cfg_path, extra, counts, report))


def _image(w: StoreWriter, pdir: Path, view: str, phase: str, extra: dict, counts: dict, report: ImportReport) -> None:
    pid = pdir.name
    img_path, gt_path = pdir / f"{pid}_{view}_{phase}.nii.gz", pdir / f"{pid}_{view}_{phase}_gt.nii.gz"
    if not img_path.is_file():
        if gt_path.is_file():
            report.missing.append(str(img_path))
        return
    if not gt_path.is_file():
        report.missing.append(str(gt_path))
        return
    image, spacing = read_nifti(img_path)
    label, _ = read_nifti(gt_path)
    if image.ndim != 2 or label.shape != image.shape:
        raise DataError(f"{gt_path}: shape {label.shape} does not match image {image.shape} of {img_path.name}")
    w.add_image(f"{pid}_{view}_{phase}", to_uint8(image, str(img_path)), to_label(label, str(gt_path)),
                patient=pid, view=view, phase=phase, spacing=spacing, source=str(img_path), **extra)
    counts["images"] += 1


def _sequence(w: StoreWriter, pdir: Path, view: str, cfg: dict[str, Any], cfg_path: Path, extra: dict, counts: dict,
              report: ImportReport) -> None:
    pid = pdir.name
    seq_path = pdir / f"{pid}_{view}_half_sequence.nii.gz"
    if not seq_path.is_file():
        return
    frames, spacing = read_nifti(seq_path)
    if frames.ndim == 2:
        frames = frames[None]
    gt_path = pdir / f"{pid}_{view}_half_sequence_gt.nii.gz"
    labels = labeled = None
    if gt_path.is_file():
        labels, _ = read_nifti(gt_path)
        labels = labels[None] if labels.ndim == 2 else labels
        if labels.shape != frames.shape:
            raise DataError(f"{gt_path}: shape {labels.shape} does not match the sequence {frames.shape}")
        labels, labeled = to_label(labels, str(gt_path)), np.ones(frames.shape[0], bool)
    n: int = frames.shape[0]
    ed, es = int(cfg.get("cfg_ed", 1)) - 1, int(cfg.get("cfg_es", n)) - 1
    if not (0 <= ed < n and 0 <= es < n):
        report.notes.append(f"{cfg_path}: ED/ES ({ed + 1}, {es + 1}) outside the {n}-frame half sequence; "
                            f"assumed its first and last frames")
        ed, es = 0, n - 1
    fps = float(cfg.get("frame_rate", float("nan")))
    w.add_sequence(f"{pid}_{view}_half_sequence", to_uint8(frames, str(seq_path)), labels, labeled,
                   patient=pid, view=view, spacing=spacing, ed=ed, es=es,
                   ef=float(cfg.get("ef", float("nan"))), fps=fps, source=str(seq_path),
                   **{k: v for k, v in extra.items() if k not in ("ef", "frame_rate")})
    counts["sequences"] += 1


def _splits(w: StoreWriter, split_dir: Path, patients: list[str], seed: int, report: ImportReport) -> None:
    files = {name: split_dir / fname for name, fname in SPLIT_FILES.items()}
    if any(p.is_file() for p in files.values()):
        listed: set[str] = set()
        for name, path in files.items():
            members = read_lines(path) if path.is_file() else []
            if not path.is_file():
                report.notes.append(f"{path}: not found; split '{name}' is empty")
            listed.update(members)
            w.set_split(name, patients=members)
        unlisted = sorted(set(patients) - listed)
        if unlisted:
            report.notes.append(f"{len(unlisted)} imported patients are in no official split file "
                                f"(e.g. {', '.join(unlisted[:3])})")
        return
    report.notes.append(f"{split_dir}: no official split files; split by patient with seed {seed} (70/10/20)")
    for name, members in split_patients(patients, seed).items():
        w.set_split(name, patients=members)
