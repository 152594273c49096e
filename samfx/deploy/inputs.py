"""What ``samfx predict`` reads: images, NIfTI, samfx stores, DICOM files and folders, videos, each
read into the pixels the importers would store and checked before the model loads (a bad file stops
the command, or with ``skipped`` is reported in one line and left out)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import SamfxError
from samfx.data.images import read_image
from samfx.data.importers.dicom import collect_dicoms, item_name
from samfx.data.importers.dicom_read import is_dicom, read_dicom
from samfx.data.importers.video import read_video
from samfx.data.store import open_store, read_frames, read_index, read_sample
from samfx.deploy.caveats import (
    check_modality,
)

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv")


@dataclass
class Input:
    name: str
    frames: np.ndarray                  # (T,H,W) uint8; T=1 for a single image
    spacing: tuple[float, ...] | None  # (row mm, col mm)
    sequence: bool
    labels: np.ndarray | None = None    # (T,H,W) ground truth when known (overlays only)
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)   # found while reading (predictions.json ``warnings``)


def read_inputs(path: str | Path, *, any_modality: bool = False, skipped: list[str] | None = None) -> list[Input]:
    """The images / sequences in one input file; a SamfxError naming the file when it is unreadable, or a
    DICOM that is not ultrasound (Modality other than US) unless `any_modality`. With a `skipped` list, such
    a file's one-line error is appended there and the file left out (each DICOM of a folder on its own); an
    input that does not exist is an error either way."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SamfxError(f"{p}: input not found")
    if p.is_dir() or is_dicom(p) or p.name.lower().endswith(".dcm"):
        return _read_dicom(p, any_modality, skipped)
    return _attempt(skipped, lambda: _read_file(p))


def _attempt(skipped: list[str] | None, read: Any) -> list[Input]:
    """``read()``; its SamfxError is raised, or with a `skipped` list recorded there (no inputs)."""
    try:
        return list(read())
    except SamfxError as exc:
        if skipped is None:
            raise
        skipped.append(str(exc))
        return []


def _read_file(p: Path) -> list[Input]:
    name = p.name
    for suffix in (".nii.gz", ".nii", ".h5", ".hdf5", *IMAGE_EXT, *VIDEO_EXT):
        if name.lower().endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        raise SamfxError(f"{p}: unsupported input type; use PNG/JPEG/TIFF images, NIfTI (.nii, .nii.gz), a "
                         f"samfx HDF5 store (.h5), DICOM files or a folder of DICOM files, MP4/AVI videos")
    if name.lower().endswith((".h5", ".hdf5")):
        return _read_store(p, stem)
    if name.lower().endswith(VIDEO_EXT):
        frames, fps = read_video(p)
        return [Input(stem, frames, None, frames.shape[0] > 1, source=str(p), extra={"fps": fps})]
    return [read_image_input(p, stem)]


def read_image_input(p: Path, stem: str) -> Input:
    """An image or NIfTI file as the Input predict segments: the pixels (T,H,W) uint8 exactly as the importers
    store them (samfx.data.images.read_image), T=1 for a 2-D image; a NIfTI of two or more frames is a
    sequence, its spacing kept when positive and finite (else dropped, with the reader's warning kept in
    ``warnings``). A DataError naming the file when it cannot be used."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        arr, spacing = read_image(p)
    frames = arr if arr.ndim == 3 else arr[None]
    if spacing is not None and not all(v > 0 and math.isfinite(v) for v in spacing):
        spacing = None
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return Input(stem, frames, spacing, frames.shape[0] > 1, source=str(p), warnings=notes)


def _read_store(p: Path, stem: str) -> list[Input]:
    index = read_index(p)
    out = []
    with open_store(p) as f:
        for item in index.items.values():
            sp = tuple(float(v) for v in item.spacing)
            spacing = sp if all(math.isfinite(v) and v > 0 for v in sp) else None
            if item.kind == "sample":
                image, label = read_sample(f, item.id)
                out.append(Input(f"{stem}-{item.id}", image[None], spacing, False, label[None], str(p)))
            else:
                frames, labels = read_frames(f, item.id)
                labels = np.where(np.asarray(item.labeled)[:, None, None], labels, 0)
                out.append(Input(f"{stem}-{item.id}", frames, spacing, True, labels, str(p),
                                 {"ed": item.ed, "es": item.es, "fps": float(item.attrs.get("fps", "nan"))}))
    return out


def _read_dicom(p: Path, any_modality: bool, skipped: list[str] | None = None) -> list[Input]:
    """A DICOM file, or every DICOM file under a folder, as it would be imported (samfx data dicom); only
    ultrasound (Modality US) unless `any_modality`; bad files recorded in `skipped` (read_inputs)."""
    prefix = f"{p.name}-" if p.is_dir() else ""

    def one(path: Path, rel: str) -> list[Input]:
        cine = read_dicom(path)
        check_modality(cine.modality, path, any_modality)
        return [Input(prefix + item_name(rel), cine.frames, cine.spacing, cine.frames.shape[0] > 1,
                      source=str(path), extra={"fps": cine.fps, "sector_fraction": cine.attrs.get("sector_fraction")})]

    return [it for path, rel in collect_dicoms([p]) for it in _attempt(skipped, lambda: one(path, rel))]
