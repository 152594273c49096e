"""Validation of a store's contents (samfx.data.store; docs/data.md "Validation").

What the writer is given (arrays, label ids, spacing) is checked before it is written. When a store is
read, its structure (groups, attributes, dataset shapes and dtypes) is checked from metadata when it is
opened, and label values on every read with one vectorised table lookup. h5py's errors on a damaged
file become one-line DataErrors naming the file and the dataset path.

Declared sizes are bounded before anything is read, so a file that lies about its shapes cannot make
a reader allocate more than it holds sensibly: an image side at most :data:`MAX_SIDE` pixels, a
sequence at most :data:`MAX_FRAMES` frames, one item at most :data:`MAX_ITEM_BYTES`, one HDF5 chunk
(the unit h5py decompresses whole) at most :data:`MAX_CHUNK_BYTES`, a split list at most
:data:`MAX_LIST` entries.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import DataError, first_line

READ_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError)  # what h5py raises on damage
REMAKE = "re-create it with `samfx data synth` or an importer (a cached store: delete it, it is rebuilt)"


@contextmanager
def reading(path: str | Path, where: str):
    """Turn h5py's errors on a damaged file into a DataError naming the file and dataset path."""
    try:
        yield
    except READ_ERRORS as exc:
        raise DataError(f"{path}: {where} cannot be read ({first_line(exc)}); the file is damaged, "
                        f"{REMAKE}") from None


def bad(p: Path, where: str, what: str) -> DataError:
    """The error for a well-formed HDF5 file whose content breaks the store layout."""
    return DataError(f"{p}: {where} {what}; the file is damaged or not written by samfx, {REMAKE}")


MAX_SIDE = 16384
MAX_FRAMES = 100_000
MAX_ITEM_BYTES = 4 * 1024**3
MAX_CHUNK_BYTES = 256 * 1024**2
MAX_LIST = 10_000_000


def _desc(ds) -> str:
    return f"{ds.dtype} {tuple(ds.shape)}"


def check_extent(p: Path, where: str, ds, frames: bool = False) -> None:
    """Refuse dataset `ds` whose declared shape or chunk shape is beyond the bounds above (metadata only)."""
    shape = tuple(int(n) for n in ds.shape)
    sides, count = (shape[1:], shape[:1]) if frames else (shape, ())
    size = int(np.prod(shape, dtype=object)) * ds.dtype.itemsize
    chunk = int(np.prod(ds.chunks, dtype=object)) * ds.dtype.itemsize if ds.chunks else 0
    if any(n > MAX_SIDE for n in sides) or any(n > MAX_FRAMES for n in count) or size > MAX_ITEM_BYTES:
        raise bad(p, where, f"declares shape {shape} ({size:,} bytes), beyond what samfx reads (sides <= "
                            f"{MAX_SIDE}, frames <= {MAX_FRAMES}, {MAX_ITEM_BYTES:,} bytes per item)")
    if chunk > MAX_CHUNK_BYTES:
        raise bad(p, where, f"declares chunks {tuple(ds.chunks)} ({chunk:,} bytes), beyond the "
                            f"{MAX_CHUNK_BYTES:,} bytes samfx decompresses at once")


def read_list(p: Path, where: str, ds) -> set[str]:
    """The strings of 1-D split list `ds`, after checking its declared length."""
    if ds.ndim != 1 or ds.shape[0] > MAX_LIST:
        raise bad(p, where, f"is {_desc(ds)}, expected a list of at most {MAX_LIST:,} names")
    return {v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]}


def check_sample(p: Path, where: str, g) -> tuple[int, ...]:
    """(H,W) of sample group `g`, after checking its datasets' shapes and dtypes (metadata only)."""
    img, lab = g["image"], g["label"]
    check_extent(p, f"{where}/image", img)
    check_extent(p, f"{where}/label", lab)
    if img.ndim != 2 or 0 in img.shape or img.dtype != np.uint8:
        raise bad(p, f"{where}/image", f"is {_desc(img)}, expected a non-empty (H,W) uint8 image")
    if lab.shape != img.shape or lab.dtype != np.uint8:
        raise bad(p, f"{where}/label", f"is {_desc(lab)}, expected uint8 {tuple(img.shape)} like its image")
    return tuple(img.shape)


def check_sequence(p: Path, where: str, g) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """((T,H,W), labeled flags) of sequence group `g`, after checking shapes and dtypes."""
    fr, lab, flags = g["frames"], g["labels"], g["labeled"]
    for name, ds in (("frames", fr), ("labels", lab), ("labeled", flags)):
        check_extent(p, f"{where}/{name}", ds, frames=True)
    if fr.ndim != 3 or 0 in fr.shape or fr.dtype != np.uint8:
        raise bad(p, f"{where}/frames", f"is {_desc(fr)}, expected non-empty (T,H,W) uint8 frames")
    if lab.shape != fr.shape or lab.dtype != np.uint8:
        raise bad(p, f"{where}/labels", f"is {_desc(lab)}, expected uint8 {tuple(fr.shape)} like its frames")
    if flags.shape != fr.shape[:1] or flags.dtype.kind not in "biu":
        raise bad(p, f"{where}/labeled", f"is {_desc(flags)}, expected bool ({fr.shape[0]},), one flag per frame")
    return tuple(fr.shape), tuple(bool(x) for x in flags[()])


def require(p: Path, where: str, g, datasets: tuple[str, ...], attrs: tuple[str, ...]) -> None:
    for d in datasets:
        if d not in g:
            raise DataError(f"{p}: {where} has no dataset '{d}'; the file is incomplete or damaged, re-create it")
    for a in attrs:
        if a not in g.attrs:
            raise DataError(f"{p}: {where} has no attribute '{a}'; the file is incomplete or damaged, re-create it")


def check_label_values(labels: np.ndarray, classes: Any, path: str | Path, where: str) -> None:
    """DataError naming `where` unless every value of uint8 `labels` is 0 or one of `classes`
    (one table lookup per pixel: cheap next to decompressing and resizing the same pixels)."""
    ok = np.zeros(256, bool)
    ok[[0, *(int(c) for c in np.asarray(classes).reshape(-1))]] = True
    wrong = ~ok[labels]
    if wrong.any():
        found = np.unique(labels[wrong])[:5].tolist()
        raise DataError(f"{path}: {where} holds label ids {found} that the store does not declare (classes "
                        f"{sorted(int(c) for c in np.asarray(classes).reshape(-1))}); fix the labels, {REMAKE}")


def as_uint8(arr: Any, what: str, where: str) -> np.ndarray:
    """`arr` as uint8 (bool and integral values in 0..255 convert); a DataError for anything else."""
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 255 or np.any(a != np.round(a))):
        raise DataError(f"{where}: {what} must hold integers in 0..255, got {a.dtype} in "
                        f"[{a.min()}, {a.max()}]; rescale it before writing")
    return a.astype(np.uint8)


def check_labels(label: np.ndarray, allowed: set[int], where: str) -> None:
    """A label map given to the writer holds only `allowed` ids (0 and the declared classes)."""
    outside = sorted(set(np.unique(label).tolist()) - allowed)
    if outside:
        raise DataError(f"{where}: label ids {outside} are outside the declared set {sorted(allowed)}; "
                        f"remap them or declare the classes")


def check_spacing(spacing: Any, where: str) -> np.ndarray:
    """(row_mm, col_mm) float64, positive or NaN (None: unknown, NaN)."""
    sp = np.asarray(spacing if spacing is not None else (np.nan, np.nan), dtype=np.float64).reshape(-1)
    if sp.shape != (2,):
        raise DataError(f"{where}: spacing must be (row_mm, col_mm), got {spacing!r}")
    if np.any(sp <= 0):
        raise DataError(f"{where}: spacing must be positive mm per pixel (NaN if unknown), got {sp.tolist()}")
    return sp
