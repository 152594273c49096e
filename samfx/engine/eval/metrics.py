"""Segmentation metrics: Dice, IoU, Hausdorff distance (HD) and HD95, per class / image / patient.

Computed directly with numpy and scipy distance transforms (not torchmetrics: its
``HausdorffDistance`` is wrong on non-square masks up to 1.9 and has no percentile, and
``DiceScore``'s default averaging changed in 1.9). docs/metrics.md states every definition.

Definitions, for binary masks P (prediction) and G (ground truth):

- Dice = 2|P∩G| / (|P|+|G|); IoU = |P∩G| / |P∪G|.
- Boundary ∂M = pixels of M with a 4-neighbour outside M (the image border counts as outside).
- d(p, ∂X) = Euclidean distance from pixel centre p to the nearest pixel centre of ∂X, in mm
  when the spacing (row mm, column mm) is known, in pixels otherwise.
- HD = max(max_{p∈∂P} d(p,∂G), max_{g∈∂G} d(g,∂P)); HD95 = max of the two directed 95th
  percentiles (numpy's linear interpolation), as in medpy and MONAI.

Empty-mask policy (never dropped silently):
- P and G both empty: Dice 1, IoU 1, HD 0, HD95 0 (a correct "absent").
- exactly one empty: Dice 0, IoU 0, HD = HD95 = inf. JSON reports inf as null; summaries take the
  mean over finite values and report how many were infinite (``n_inf``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

_CROSS = ndimage.generate_binary_structure(2, 1)
METRICS = ("dice", "iou", "hd", "hd95")
COMPAT = "row_hd_compat"


def _as_bool(mask: Any, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask (H,W), got shape {arr.shape}")
    return arr.astype(bool)


def _check_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_bool(pred, "pred"), _as_bool(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    return p, g


def dice(pred: Any, gt: Any) -> float:
    """Dice of two binary masks; 1.0 when both are empty."""
    p, g = _check_pair(pred, gt)
    denom = int(p.sum()) + int(g.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom


def iou(pred: Any, gt: Any) -> float:
    """Intersection over union of two binary masks; 1.0 when both are empty."""
    p, g = _check_pair(pred, gt)
    union = int((p | g).sum())
    return 1.0 if union == 0 else int((p & g).sum()) / union


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it (outside the image counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def _spacing(spacing: Sequence[float] | None) -> tuple[float, float] | None:
    if spacing is None:
        return None
    s = tuple(float(v) for v in np.asarray(spacing, dtype=float).reshape(-1))
    if len(s) != 2:
        raise ValueError(f"spacing: expected (row_mm, col_mm), got {spacing!r}")
    if not all(math.isfinite(v) and v > 0 for v in s):
        return None  # unknown spacing -> pixels
    return s


def surface_distances(pred: Any, gt: Any, spacing: Sequence[float] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Directed boundary distances (∂P -> ∂G, ∂G -> ∂P). Both masks must be non-empty."""
    p, g = _check_pair(pred, gt)
    if not p.any() or not g.any():
        raise ValueError("surface_distances needs two non-empty masks; see the empty-mask policy")
    sp = _spacing(spacing)
    bp, bg = boundary(p), boundary(g)
    dt_g = ndimage.distance_transform_edt(~bg, sampling=sp)
    dt_p = ndimage.distance_transform_edt(~bp, sampling=sp)
    return dt_g[bp], dt_p[bg]


def hausdorff(pred: Any, gt: Any, spacing: Sequence[float] | None = None, percentile: float = 100.0) -> float:
    """Symmetric (percentile) Hausdorff distance; 0 if both empty, inf if exactly one is empty."""
    p, g = _check_pair(pred, gt)
    if not p.any() and not g.any():
        return 0.0
    if not p.any() or not g.any():
        return math.inf
    d_pg, d_gp = surface_distances(p, g, spacing)
    if percentile >= 100:
        return float(max(d_pg.max(), d_gp.max()))
    return float(max(np.percentile(d_pg, percentile), np.percentile(d_gp, percentile)))


def hd95(pred: Any, gt: Any, spacing: Sequence[float] | None = None) -> float:
    return hausdorff(pred, gt, spacing, 95.0)


def row_hd_compat(pred: Any, gt: Any) -> float:
    """The SAMUS authors' "HD", for comparison with their tables only: NOT a geometric distance.

    Their evaluation scales masks to {0,255} and runs the ``hausdorff`` package with the Manhattan
    distance on the image *rows* as points, so this is 255 x the Hausdorff distance between the
    two sets of rows under the Hamming metric (number of differing pixels between two rows).
    """
    p, g = _check_pair(pred, gt)
    a, b = p.astype(np.int32), g.astype(np.int32)
    # Hamming distance between every row of a and every row of b
    d = a.sum(1)[:, None] + b.sum(1)[None, :] - 2 * (a @ b.T)
    return float(255 * max(d.min(1).max(), d.min(0).max()))


def binary_metrics(pred: Any, gt: Any, spacing: Sequence[float] | None = None,
                   compat: bool = False) -> dict[str, float]:
    """Dice, IoU, HD, HD95 (and optionally the compat row-HD) of one binary mask pair."""
    p, g = _check_pair(pred, gt)
    out = {"dice": dice(p, g), "iou": iou(p, g)}
    if p.any() and g.any():
        d_pg, d_gp = surface_distances(p, g, spacing)
        out["hd"] = float(max(d_pg.max(), d_gp.max()))
        out["hd95"] = float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
    else:
        out["hd"] = out["hd95"] = 0.0 if not p.any() and not g.any() else math.inf
    if compat:
        out[COMPAT] = row_hd_compat(p, g)
    return out


def label_metrics(pred: Any, gt: Any, classes: Iterable[int], spacing: Sequence[float] | None = None,
                  compat: bool = False) -> dict[int, dict[str, float]]:
    """Per-class metrics of two label maps (H,W) of integer class ids."""
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape or p.ndim != 2:
        raise ValueError(f"label maps must be 2-D and the same shape, got {p.shape} and {g.shape}")
    return {int(c): binary_metrics(p == c, g == c, spacing, compat) for c in classes}


def distance_unit(spacing: Sequence[float] | None) -> str:
    return "mm" if _spacing(spacing) is not None else "px"


def stats(values: Iterable[float]) -> dict[str, Any]:
    """mean / std (population, ddof=0) / n over finite values, and n_inf for infinite ones."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    finite = [v for v in vals if math.isfinite(v)]
    out: dict[str, Any] = {"mean": float(np.mean(finite)) if finite else None,
                           "std": float(np.std(finite)) if finite else None,
                           "n": len(finite)}
    n_inf = len(vals) - len(finite)
    out["n_inf"] = n_inf
    return out


def summarize(records: list[dict[str, Any]], class_names: dict[int, str],
              metric_names: Sequence[str] = METRICS) -> dict[str, Any]:
    """Aggregate per-image records into per-class statistics over images and over patients.

    Each record: {"patient": str, "classes": {name: {metric: float}}}. A patient's value is the
    mean of its images' finite values; it is inf when all of its images are inf for that metric.
    """
    per_patient: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        per_patient.setdefault(str(rec.get("patient", rec.get("index"))), []).append(rec)
    patients = []
    for pid, recs in per_patient.items():
        classes: dict[str, dict[str, Any]] = {}
        for name in class_names.values():
            classes[name] = {}
            for m in metric_names:
                vals = [r["classes"][name][m] for r in recs]
                finite = [v for v in vals if math.isfinite(v)]
                classes[name][m] = float(np.mean(finite)) if finite else math.inf
        patients.append({"patient": pid, "n_images": len(recs), "classes": classes})

    def block(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {name: {m: stats(it["classes"][name][m] for it in items) for m in metric_names}
                for name in class_names.values()}

    by_image, by_patient = block(records), block(patients)
    mean_over_classes = {}
    for m in metric_names:
        means = [by_image[n][m]["mean"] for n in class_names.values() if by_image[n][m]["mean"] is not None]
        mean_over_classes[m] = float(np.mean(means)) if means else None
    return {"per_image": by_image, "per_patient": by_patient, "mean": mean_over_classes,
            "patients": patients}
