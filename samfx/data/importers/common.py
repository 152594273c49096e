"""Shared pieces of the importers: the import report and image reading helpers."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.importers.summary import store_summary

T = TypeVar("T")

SHOW = 5  # how many missing/bad entries a report names


@dataclass
class ImportReport:
    """What an importer did: counts, and the files it could not use (missing ones are not errors)."""

    out: str
    source: str
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # "file: why", with skip_bad
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)  # samfx.data.importers.summary, set by finish()

    def finish(self) -> ImportReport:
        """Fill `stats` from the store written to `out` (call after the writer closed); returns self."""

        self.stats = store_summary(self.out)
        return self

    def attempt(self, skip_bad: bool, fn: Callable[[], T]) -> T | None:
        """``fn()``; its DataError is raised, or with ``skip_bad`` recorded in ``skipped`` (result None)."""
        try:
            return fn()
        except DataError as exc:
            if not skip_bad:
                raise
            self.skipped.append(str(exc))
            return None

    def summary_lines(self) -> list[str]:
        lines = [f"wrote {self.out}: " + ", ".join(f"{v} {k}" for k, v in self.counts.items())]
        for what, items in (("listed but missing", self.missing), ("skipped (bad)", self.skipped)):
            if items:
                more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
                lines.append(f"{len(items)} {what}: " + "; ".join(items[:SHOW]) + more)
        lines += self.notes
        if self.stats:
            from samfx.data.importers.summary import summary_line

            lines.append(summary_line(self.stats))
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"out": self.out, "source": self.source, "counts": self.counts,
                "missing": {"count": len(self.missing), "first": self.missing[:SHOW]},
                "skipped": {"count": len(self.skipped), "first": self.skipped[:SHOW]}, "notes": self.notes,
                "stats": self.stats}


def safe_id(text: str) -> str:
    """An item id from free text: characters the store does not allow become '_'."""
    return re.sub(r"[^A-Za-z0-9_.:+=@,()\-]", "_", text)


def to_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    """Intensities as uint8: integers in 0..255 are kept, anything else is min-max scaled."""
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise DataError(f"{where}: image is empty or has NaN/inf values; the file is damaged")
    if a.min() >= 0 and a.max() <= 255 and np.all(a == np.round(a)):
        return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    return np.round((a - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)


def to_label(arr: np.ndarray, where: str) -> np.ndarray:
    """Label ids as uint8; they must be non-negative integers (ids are checked by the writer)."""
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 255
                   or np.any(np.abs(a - np.round(a)) > 1e-3)):
        raise DataError(f"{where}: label map must hold integer class ids, got values in "
                        f"[{a.min()}, {a.max()}]; is this an image rather than a label file?")
    return np.round(a).astype(np.uint8)


def read_png(path: Path, *, label: bool = False) -> np.ndarray:
    """A PNG/JPEG/BMP as a 2-D uint8 array (grayscale). Masks keep their values (1-bit -> 0/1)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if label:
                a = np.asarray(im)
                if a.ndim == 3:
                    if not np.all(a[..., :3] == a[..., :1]):
                        raise DataError(f"{path}: colour label image; labels must be one class id per pixel")
                    a = a[..., 0]
                return to_label(a, str(path))
            if mode in ("I", "I;16", "I;16B", "F"):
                return to_uint8(np.asarray(im).astype(np.float64), str(path))
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc}); the file is damaged or "
                        f"not an image") from None


def read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
