"""Summary numbers of a store: counts, splits, shapes, spacing, class area fractions, EF."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from samfx.data.store import open_store, read_index, read_labels, read_sample


def _dist(values: list[float]) -> dict[str, Any] | None:
    vals = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if vals.size == 0:
        return None
    return {"n": int(vals.size), "mean": float(vals.mean()), "std": float(vals.std()),
            "min": float(vals.min()), "max": float(vals.max())}


def store_stats(path: str | Path) -> dict[str, Any]:
    """Numbers for `samfx data stats` (area fractions: mean share of pixels per class over all
    labeled images and labeled sequence frames, at native resolution)."""
    index = read_index(path)
    items = list(index.items.values())
    samples = [it for it in items if it.kind == "sample"]
    seqs = [it for it in items if it.kind == "sequence"]
    ids = index.classes
    sums = np.zeros(len(ids) + 1)
    n_maps = 0
    with open_store(path) as f:
        generator = f.attrs.get("generator_version")
        for it in samples:
            lab = read_sample(f, it.id, ids)[1]
            sums += np.bincount(lab.ravel(), minlength=256)[[0, *ids]] / lab.size
            n_maps += 1
        for it in seqs:
            sel = np.flatnonzero(np.asarray(it.labeled, bool))
            if sel.size:
                labs = read_labels(f, it.id, slice(sel[0], sel[-1] + 1), ids)[sel - sel[0]]
                for lab in labs:
                    sums += np.bincount(lab.ravel(), minlength=256)[[0, *ids]] / lab.size
                n_maps += len(sel)
    shapes = [it.shape[-2:] for it in items]
    spacings = [s for it in items for s in it.spacing]
    ef_by_patient: dict[str, float] = {}
    for it in seqs:
        if math.isfinite(it.ef):
            ef_by_patient.setdefault(it.patient, it.ef)
    for it in samples:  # CAMUS keeps EF on images too
        ef = it.attrs.get("ef")
        if isinstance(ef, (int, float)) and math.isfinite(ef):
            ef_by_patient.setdefault(it.patient, float(ef))
    splits = {}
    for name in sorted(index.splits):
        members = index.in_split(name)
        splits[name] = {"patients": len({it.patient for it in members}),
                        "samples": sum(it.kind == "sample" for it in members),
                        "sequences": sum(it.kind == "sequence" for it in members)}
    views: dict[str, int] = {}
    for it in items:
        views[it.view or "-"] = views.get(it.view or "-", 0) + 1
    finite_sp = [s for s in spacings if math.isfinite(s)]
    return {
        "path": str(path), "source": index.source,
        "classes": dict(zip([str(c) for c in ids], index.class_names)),
        "counts": {"patients": len({it.patient for it in items}), "samples": len(samples),
                   "sequences": len(seqs), "frames": int(sum(it.shape[0] for it in seqs)),
                   "labeled_frames": int(sum(sum(it.labeled) for it in seqs)), "label_maps": n_maps},
        "views": views, "splits": splits,
        "image_shape": {"min": [int(min(s[0] for s in shapes)), int(min(s[1] for s in shapes))],
                        "max": [int(max(s[0] for s in shapes)), int(max(s[1] for s in shapes))]} if shapes else None,
        "spacing_mm": {"min": min(finite_sp), "max": max(finite_sp),
                       "unknown_items": sum(not math.isfinite(it.spacing[0]) for it in items)} if finite_sp else
                      {"min": None, "max": None, "unknown_items": len(items)},
        "area_fraction": dict(zip(["background", *index.class_names],
                                  [float(x) for x in (sums / max(n_maps, 1))])),
        "ef": _dist(list(ef_by_patient.values())),
        **_extras(items, ef_by_patient, None if generator is None else int(generator)),
    }


def _count(values: list[Any]) -> dict[str, int] | None:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items())) or None


def _extras(items: list, ef_by_patient: dict[str, float], generator: int | None) -> dict[str, Any]:
    """Image quality per patient (CAMUS, synthetic), and for synthetic stores the generator version,
    half/full cycles, the sampled EF (ef_target) and the EF measured on the labels minus it."""
    first: dict[str, Any] = {}
    for it in items:
        first.setdefault(it.patient, it.attrs)
    target = {p: float(a["ef_target"]) for p, a in first.items() if isinstance(a.get("ef_target"), (int, float))}
    out: dict[str, Any] = {"image_quality": _count([a["image_quality"] for a in first.values()
                                                    if "image_quality" in a])}
    if generator is not None:
        out["generator_version"] = generator
        out["cycles"] = _count([it.attrs.get("cycle", "half") for it in items if it.kind == "sequence"])
        out["ef_target"] = _dist(list(target.values()))
        out["ef_error"] = _dist([ef_by_patient[p] - t for p, t in target.items() if p in ef_by_patient])
    return out
