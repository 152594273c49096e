"""What an annotation session opens: one image or cine loop, read exactly as ``samfx predict`` reads it
(:func:`samfx.deploy.inputs.read_inputs`: PNG/JPEG/TIFF, NIfTI, DICOM, MP4/AVI, the items of a samfx
HDF5 store)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samfx.deploy.annotate.access import AnnotateError
from samfx.deploy.inputs import read_inputs

MAX_FRAMES = 2000


@dataclass
class Loop:
    """Frames (T,H,W) uint8 (T=1: an image), spacing (row mm, col mm) or None, frame rate or None."""

    name: str
    frames: np.ndarray
    spacing: tuple[float, float] | None = None
    fps: float | None = None
    source: str = ""
    labels: np.ndarray | None = None       # labels already stored with it (a store's), not used as prompts
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        t, h, w = self.frames.shape
        return int(t), int(h), int(w)


def list_items(path: Path) -> list[str]:
    """The names of the images / sequences in one input file (several for a store or a DICOM folder)."""
    return [it.name for it in read_inputs(path)]


def open_loop(path: Path, item: int | str = 0) -> Loop:
    """Item `item` (index or name) of the input file at `path` as a :class:`Loop`; an AnnotateError
    naming the file and the items it has when there is no such item."""
    inputs = read_inputs(path)
    names = [it.name for it in inputs]
    if isinstance(item, str) and not item.isdigit():
        found = [i for i, n in enumerate(names) if n == item or n.endswith(f"-{item}")]   # a store's id
        if len(found) != 1:
            raise AnnotateError(f"{path}: no item '{item}'; it has: {', '.join(names[:20])}")
        chosen = inputs[found[0]]
    else:
        k = int(item)
        if not 0 <= k < len(inputs):
            raise AnnotateError(f"{path}: item {k} is out of range; it has {len(inputs)} item(s) "
                                f"(0..{len(inputs) - 1})")
        chosen = inputs[k]
    frames = np.ascontiguousarray(chosen.frames, dtype=np.uint8)
    if frames.shape[0] > MAX_FRAMES:
        raise AnnotateError(f"{path}: {frames.shape[0]} frames, more than annotate's {MAX_FRAMES}; cut the loop "
                            f"shorter (samfx data video/dicom, then a store item)")
    fps = chosen.extra.get("fps")
    fps = float(fps) if fps is not None and math.isfinite(float(fps)) and float(fps) > 0 else None
    sp = tuple(float(v) for v in chosen.spacing) if chosen.spacing is not None else None
    return Loop(chosen.name, frames, (sp[0], sp[1]) if sp else None, fps, str(path), chosen.labels,
                dict(chosen.extra))
