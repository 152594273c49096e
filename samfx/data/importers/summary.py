"""The stats line every importer prints at the end, computed from the store it wrote.

Read from the store's index (metadata only, and validated on the way), so the line describes what
was written, not what the importer meant to write.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from samfx.data.store import read_index


def store_summary(path: str | Path) -> dict[str, Any]:
    """Images, sequences, frames, patients, classes, spacing range and EF count of the store `path`."""
    index = read_index(path)
    items = list(index.items.values())
    seqs = [it for it in items if it.kind == "sequence"]
    spacing = [s for it in items for s in it.spacing if math.isfinite(s)]
    efs: dict[str, float] = {}
    for it in items:
        ef = it.ef if it.kind == "sequence" else it.attrs.get("ef", float("nan"))
        if isinstance(ef, (int, float)) and math.isfinite(ef):
            efs.setdefault(it.patient, float(ef))
    return {
        "images": len(items) - len(seqs), "sequences": len(seqs),
        "frames": sum(it.shape[0] for it in seqs), "labeled_frames": sum(sum(it.labeled) for it in seqs),
        "patients": len({it.patient for it in items}),
        "classes": dict(zip((str(c) for c in index.classes), index.class_names)),
        "spacing_mm": [min(spacing), max(spacing)] if spacing else None,
        "spacing_unknown_items": sum(not math.isfinite(it.spacing[0]) for it in items),
        "ef_patients": len(efs), "ef_range": [min(efs.values()), max(efs.values())] if efs else None,
    }


def summary_line(s: dict[str, Any]) -> str:
    """One line: `stats: 15 images, 8 sequences (40 frames, 40 labeled), 4 patients, ...`."""
    classes = ", ".join(f"{k}={v}" for k, v in s["classes"].items())
    sp = s["spacing_mm"]
    spacing = "unknown" if sp is None else f"{sp[0]:.4g}-{sp[1]:.4g} mm/px"
    if sp is not None and s["spacing_unknown_items"]:
        spacing += f" ({s['spacing_unknown_items']} items unknown)"
    ef = "none" if s["ef_range"] is None else (
        f"{s['ef_patients']} patients, {s['ef_range'][0]:.1f}-{s['ef_range'][1]:.1f} %")
    return (f"stats: {s['images']} images, {s['sequences']} sequences ({s['frames']} frames, "
            f"{s['labeled_frames']} labeled), {s['patients']} patients, classes {classes}, "
            f"spacing {spacing}, EF {ef}")
