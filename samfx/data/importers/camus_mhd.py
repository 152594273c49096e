"""Import CAMUS as released for the 2019 challenge (MetaImage files) into a samfx store.

Layout: ``ROOT/training/patientNNNN/`` and ``ROOT/testing/patientNNNN/`` holding
``patientNNNN_{2CH,4CH}_{ED,ES}.mhd`` (+ ``.raw``), ``..._{ED,ES}_gt.mhd`` (training only),
``patientNNNN_{2CH,4CH}_sequence.mhd`` (the ED -> ES frames; ``_sequence_gt.mhd`` is read when
present) and ``Info_{2CH,4CH}.cfg`` (``ED``, ``ES``, ``NbFrame``, ``Sex``, ``Age``,
``ImageQuality`` and, in training, ``LVedv``, ``LVesv``, ``LVef``). ROOT may also be the
``training`` or ``testing`` folder itself. Labels: 1 LV cavity, 2 myocardium, 3 LA.

Items use the ids of the NIfTI importer (``patientNNNN_2CH_ED``, ``patientNNNN_2CH_sequence``);
testing patients are ``testing_patientNNNN`` (both folders number their patients from 0001) and
form the split ``testing``, with unlabeled sequences only (no ground truth, so no single images).
Training patients get a seeded 70/10/20 train/val/test split: the release has no split files.
A training sequence without ``_sequence_gt`` is labeled on its ED/ES frames from the ``_gt`` images,
after checking that the ED/ES image is that frame of the sequence pixel for pixel.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.images import to_label, to_uint8
from samfx.data.importers.camus_layout import CLASS_NAMES, CLASSES, VIEWS, read_cfg
from samfx.data.importers.common import ImportReport
from samfx.data.importers.metaimage import read_metaimage
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter, split_patients

FOLDERS = ("training", "testing")
TESTING_SPLIT = "testing"


def read_mhd(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """(array (rows, cols) or (frames, rows, cols), spacing (row_mm, col_mm)) of a CAMUS .mhd file."""
    image = read_metaimage(path)
    data = image.array
    if data.ndim == 3 and data.shape[0] == 1 and "sequence" not in path.name:
        data = data[0]  # a 2-D image written as one slice
    if data.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 2-D image or a (frames, rows, cols) sequence, got shape {data.shape}")
    return data, (image.spacing[1], image.spacing[0])


def is_mhd_release(root: Path) -> bool:
    """Whether `root` looks like the 2019 MetaImage release (or one of its two folders)."""
    folders = [root / f for f in FOLDERS if (root / f).is_dir()] or [root]
    return any(next(p.glob("patient*/patient*.mhd"), None) is not None for p in folders)


def _patient_folders(root: Path) -> list[tuple[str, Path]]:
    """(folder kind, patient folder) for every patientNNNN folder of the release."""
    tops = [(f, root / f) for f in FOLDERS if (root / f).is_dir()]
    if not tops:  # ROOT is training/ or testing/ itself
        tops = [("testing" if root.name == "testing" else "training", root)]
    return [(kind, p) for kind, top in tops for p in sorted(top.iterdir())
            if p.is_dir() and re.fullmatch(r"patient\d+", p.name)]


def import_camus_mhd(root: Path, out: str | Path, *, seed: int = 0, sequences: bool = True,
                     skip_bad: bool = False, show_progress: bool = False, force: bool = False) -> ImportReport:
    """Import the 2019 CAMUS release at `root` into the store `out` (the caller checked `out`)."""
    folders = _patient_folders(root)
    if not folders:
        raise DataError(f"{root}: no patientNNNN folders under training/ or testing/; expected the CAMUS "
                        f"2019 layout training/patient0001/patient0001_2CH_ED.mhd")
    report = ImportReport(str(out), f"camus2019:{root}")
    counts = dict(patients=0, images=0, sequences=0, testing_patients=0)
    imported: dict[str, list[str]] = {"training": [], "testing": []}
    with StoreWriter(out, CLASSES, CLASS_NAMES, source="camus",
                     description=f"CAMUS (2019 MetaImage release) from {root}", force=force) as w, \
            progress_bar(len(folders), "importing CAMUS 2019", show_progress) as advance:
        for kind, pdir in folders:
            before = counts["images"] + counts["sequences"]
            for view in VIEWS:
                _import_view(w, kind, pdir, view, sequences, counts, report, skip_bad)
            if counts["images"] + counts["sequences"] > before:
                imported[kind].append(_patient_id(kind, pdir))
            advance()
        if not imported["training"] and not imported["testing"]:
            raise DataError(f"{root}: no CAMUS image was imported (training images need their _gt.mhd, "
                            f"testing folders their _sequence.mhd); check the layout")
        for name, members in split_patients(imported["training"], seed).items():
            w.set_split(name, patients=members)
        w.set_split(TESTING_SPLIT, patients=imported["testing"])
    counts["patients"], counts["testing_patients"] = len(imported["training"]), len(imported["testing"])
    report.notes.append(f"training patients split by patient with seed {seed} (70/10/20: the 2019 release has "
                        f"no split files); testing/ patients (no ground truth) are the split '{TESTING_SPLIT}'")
    report.counts = counts
    return report.finish()


def _patient_id(kind: str, pdir: Path) -> str:
    return pdir.name if kind == "training" else f"testing_{pdir.name}"


def _import_view(w: StoreWriter, kind: str, pdir: Path, view: str, sequences: bool, counts: dict[str, int],
                 report: ImportReport, skip_bad: bool) -> None:
    """One view of one patient: ED/ES images (training) and the sequence, each skipped alone."""
    cfg_path = pdir / f"Info_{view}.cfg"
    cfg: dict[str, Any] = read_cfg(cfg_path) if cfg_path.is_file() else {}
    extra = {k: v for k, v in cfg.items() if k not in ("cfg_ed", "cfg_es")}
    gts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if kind == "training":
        for phase in ("ED", "ES"):
            pair = report.attempt(skip_bad, lambda: _image(w, pdir, view, phase, extra, report))
            if pair is not None:
                gts[phase] = pair
                counts["images"] += 1
    if sequences and report.attempt(skip_bad, lambda: _sequence(w, kind, pdir, view, cfg, extra, gts, report)):
        counts["sequences"] += 1


def _image(w: StoreWriter, pdir: Path, view: str, phase: str, extra: dict[str, Any],
           report: ImportReport) -> tuple[np.ndarray, np.ndarray] | None:
    """Write one ED/ES image with its _gt; returns (image, label) for labeling the sequence."""
    pid = pdir.name
    img_path, gt_path = pdir / f"{pid}_{view}_{phase}.mhd", pdir / f"{pid}_{view}_{phase}_gt.mhd"
    if not img_path.is_file() or not gt_path.is_file():
        if img_path.is_file() or gt_path.is_file():
            report.missing.append(str(gt_path if img_path.is_file() else img_path))
        return None
    image, spacing = read_mhd(img_path)
    label, _ = read_mhd(gt_path)
    if image.ndim != 2 or label.shape != image.shape:
        raise DataError(f"{gt_path}: shape {label.shape} does not match image {image.shape} of {img_path.name}")
    image, label = to_uint8(image, str(img_path)), to_label(label, str(gt_path))
    w.add_image(f"{pid}_{view}_{phase}", image, label, patient=pid, view=view, phase=phase, spacing=spacing,
                source=str(img_path), **extra)
    return image, label


def _sequence(w: StoreWriter, kind: str, pdir: Path, view: str, cfg: dict[str, Any], extra: dict[str, Any],
              gts: dict[str, tuple[np.ndarray, np.ndarray]], report: ImportReport) -> bool:
    pid = pdir.name
    seq_path = pdir / f"{pid}_{view}_sequence.mhd"
    if not seq_path.is_file():
        return False
    frames, spacing = read_mhd(seq_path)
    frames = to_uint8(frames[None] if frames.ndim == 2 else frames, str(seq_path))
    n = int(frames.shape[0])
    ed, es = int(cfg.get("cfg_ed", 1)) - 1, int(cfg.get("cfg_es", n)) - 1
    if not (0 <= ed < n and 0 <= es < n):
        report.notes.append(f"{pdir / f'Info_{view}.cfg'}: ED/ES ({ed + 1}, {es + 1}) outside the {n}-frame "
                            f"sequence; assumed its first and last frames")
        ed, es = 0, n - 1
    labels, labeled = _sequence_labels(pdir, view, frames, {"ED": ed, "ES": es}, gts, report)
    patient = _patient_id(kind, pdir)
    w.add_sequence(f"{patient}_{view}_sequence", frames, labels, labeled, patient=patient, view=view,
                   spacing=spacing, ed=ed, es=es, ef=float(extra.get("ef", float("nan"))),
                   source=str(seq_path), **{k: v for k, v in extra.items() if k != "ef"})
    return True


def _sequence_labels(pdir: Path, view: str, frames: np.ndarray, index: dict[str, int],
                     gts: dict[str, tuple[np.ndarray, np.ndarray]],
                     report: ImportReport) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Labels of a sequence: its _sequence_gt file, else the ED/ES _gt on the matching frames."""
    gt_path = pdir / f"{pdir.name}_{view}_sequence_gt.mhd"
    if gt_path.is_file():
        labels, _ = read_mhd(gt_path)
        labels = labels[None] if labels.ndim == 2 else labels
        if labels.shape != frames.shape:
            raise DataError(f"{gt_path}: shape {labels.shape} does not match the sequence {frames.shape}")
        return to_label(labels, str(gt_path)), np.ones(frames.shape[0], bool)
    if not gts:
        return None, None
    labels = np.zeros(frames.shape, np.uint8)
    labeled = np.zeros(frames.shape[0], bool)
    for phase, (image, label) in gts.items():
        t = index[phase]
        if image.shape == frames.shape[1:] and np.array_equal(image, frames[t]):
            labels[t], labeled[t] = label, True
        else:
            report.notes.append(f"{pdir.name}_{view}_{phase}.mhd is not frame {t + 1} of the sequence; that "
                                f"frame is left unlabeled")
    return labels, labeled
