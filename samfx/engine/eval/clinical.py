"""Clinical read-outs of an echo sequence from its LV masks: area curve, ED/ES, volumes, EF.

Method (docs/temporal.md, "Clinical output"):
- LV area per frame A_t = (number of LV pixels) x row_mm x col_mm, in mm^2.
- ED = frame of maximum LV area, ES = frame of minimum LV area (ties: first). This is an image-based
  surrogate; clinically ED/ES come from the ECG or valve timing.
- Long axis L: the mask's extent along its first principal axis, computed on pixel coordinates in mm
  (so anisotropic spacing and tilted views are handled), plus half a pixel footprint along that axis.
  For a bullet-shaped LV with a flat mitral plane this is the apex-to-mitral-plane distance.
- Single-plane area-length volume V = 8 A^2 / (3 pi L) (exact for a prolate ellipsoid), reported in mL;
  biplane V = 8 A_2CH A_4CH / (3 pi min(L_2CH, L_4CH)).
- EF = 100 (EDV - ESV) / EDV, in percent.
- Area tracking: least-squares fit A_pred ~ gain * A_true + offset over a sequence. gain < 1 means
  the predicted curve follows only part of the true motion (damping, which biases EF low); the
  jitter left around the fit is the noise part of ``area_jitter``.
Plausibility (:func:`withhold_reasons`, :func:`edge_frames`): when a sequence's EF must not be reported
(LV lost, no cardiac cycle, frame rate unknown, LV at the image / sector edge, the model unsure of its
LV: :func:`confidence_summary`); docs/temporal.md,
"What the clinical numbers mean and when they are withheld".
Empty LV: area 0, length 0, volume 0; EF is NaN when EDV is 0 (undefined) and ``ef_errors`` counts
such cases instead of dropping them. numpy arrays or torch tensors are accepted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from samfx.contracts.errors import SamfxError


class ClinicalError(SamfxError):
    """Bad input to a clinical measurement."""


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _spacing(spacing: Any, where: str) -> tuple[float, float]:
    sp = _np(spacing).astype(np.float64).reshape(-1)
    if sp.shape != (2,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ClinicalError(f"{where}: spacing must be (row_mm, col_mm) > 0, got {sp.tolist()}; "
                            f"millimetre measurements need a known pixel spacing")
    return float(sp[0]), float(sp[1])


def _lv_masks(masks: Any, label: int, where: str) -> np.ndarray:
    """(T,H,W) bool from bool masks or label maps (LV = `label`)."""
    m = _np(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ClinicalError(f"{where}: masks must be (T,H,W) label maps or bool masks, got shape {m.shape}")
    return m.astype(bool) if m.dtype == bool else (m == label)


def lv_areas(masks: Any, spacing: Any, label: int = 1) -> np.ndarray:
    """LV area per frame in mm^2: (T,) float64."""
    sy, sx = _spacing(spacing, "lv_areas")
    return _lv_masks(masks, label, "lv_areas").sum((1, 2)).astype(np.float64) * sy * sx


def long_axis_length(mask: Any, spacing: Any) -> float:
    """Extent (mm) of a 2-D bool mask along its first principal axis (pixel centres + half a pixel footprint)."""
    sy, sx = _spacing(spacing, "long_axis_length")
    m = _np(mask).astype(bool)
    if m.ndim != 2:
        raise ClinicalError(f"long_axis_length: mask must be 2-D (H,W), got shape {m.shape}")
    rows, cols = np.nonzero(m)
    if rows.size == 0:
        return 0.0
    pts = np.stack([rows * sy, cols * sx], 1)
    pts = pts - pts.mean(0)
    if rows.size == 1:
        u = np.array([1.0, 0.0]) if sy >= sx else np.array([0.0, 1.0])
    else:
        _, vecs = np.linalg.eigh(pts.T @ pts)
        u = vecs[:, -1]
    proj = pts @ u
    # pixel centres fall short of the true extreme by 0 (many boundary pixels at varied offsets) to a
    # whole pixel footprint (a boundary on the grid); adding half the footprint splits the difference
    return float(proj.max() - proj.min() + 0.5 * (abs(u[0]) * sy + abs(u[1]) * sx))


def area_length_volume(area_mm2: float, length_mm: float) -> float:
    """Single-plane area-length volume in mL: 8 A^2 / (3 pi L) mm^3 / 1000 (0 for an empty mask)."""
    if length_mm <= 0:
        return 0.0
    return 8.0 * area_mm2 ** 2 / (3.0 * math.pi * length_mm) / 1000.0


def biplane_volume(area_2ch: float, area_4ch: float, length_2ch: float, length_4ch: float) -> float:
    """Biplane area-length volume in mL: 8 A2 A4 / (3 pi min(L2, L4))."""
    length = min(length_2ch, length_4ch)
    if length <= 0:
        return 0.0
    return 8.0 * area_2ch * area_4ch / (3.0 * math.pi * length) / 1000.0


def detect_ed_es(areas: Any) -> tuple[int, int]:
    """(ED, ES) frame indices: maximum and minimum LV area (first on ties)."""
    a = _np(areas).astype(np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ClinicalError(f"detect_ed_es: need a non-empty, finite area curve, got {a.size} values")
    return int(np.argmax(a)), int(np.argmin(a))


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in percent; NaN when EDV is 0 (no LV at ED)."""
    return float("nan") if edv <= 0 else 100.0 * (edv - esv) / edv


@dataclass
class ClipClinical:
    areas: np.ndarray        # (T,) mm^2
    lengths: np.ndarray      # (T,) mm
    volumes: np.ndarray      # (T,) mL, single-plane area-length
    ed: int
    es: int
    edv: float
    esv: float
    ef: float                # percent, NaN if undefined

    def to_json(self) -> dict[str, Any]:
        return {"areas_mm2": self.areas.tolist(), "lengths_mm": self.lengths.tolist(),
                "volumes_ml": self.volumes.tolist(), "ed": self.ed, "es": self.es, "edv_ml": self.edv,
                "esv_ml": self.esv, "ef": self.ef}


def analyze_clip(masks: Any, spacing: Any, label: int = 1, ed: int | None = None,
                 es: int | None = None) -> ClipClinical:
    """Area curve, lengths, volumes and EF of one sequence. ED/ES from the area curve unless given."""
    lv = _lv_masks(masks, label, "analyze_clip")
    sy, sx = _spacing(spacing, "analyze_clip")
    areas = lv_areas(lv, (sy, sx))
    lengths = np.array([long_axis_length(m, (sy, sx)) for m in lv])
    volumes = np.array([area_length_volume(a, length) for a, length in zip(areas, lengths)])
    d_ed, d_es = detect_ed_es(areas)
    ed = d_ed if ed is None or ed < 0 else int(ed)
    es = d_es if es is None or es < 0 else int(es)
    for name, idx in (("ed", ed), ("es", es)):
        if not 0 <= idx < len(areas):
            raise ClinicalError(f"analyze_clip: {name}={idx} is outside the {len(areas)} frames")
    return ClipClinical(areas, lengths, volumes, ed, es, float(volumes[ed]), float(volumes[es]),
                        ejection_fraction(float(volumes[ed]), float(volumes[es])))


def ef_errors(predicted: Any, truth: Any) -> dict[str, Any]:
    """Absolute EF error (percentage points) per sequence and summary; NaN pairs are counted, not dropped."""
    p, t = _np(predicted).astype(np.float64).reshape(-1), _np(truth).astype(np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ClinicalError(f"ef_errors: {p.size} predicted EFs but {t.size} ground-truth EFs; pass one per sequence")
    err = p - t
    ok = np.isfinite(err)
    return {"abs_error": np.abs(err).tolist(), "mae": float(np.abs(err[ok]).mean()) if ok.any() else float("nan"),
            "bias": float(err[ok].mean()) if ok.any() else float("nan"), "n": int(ok.sum()),
            "n_undefined": int((~ok).sum())}


@dataclass(frozen=True)
class AreaTracking:
    """How a predicted LV-area curve follows the true one (see the module docstring)."""

    gain: float             # slope of A_pred against A_true (1 = follows the whole motion; NaN if no motion)
    offset: float           # mm^2
    residual_jitter: float  # area_jitter of A_pred around gain * A_true + offset, mm^2


def area_tracking(pred_areas: Any, true_areas: Any) -> AreaTracking:
    """Fit A_pred = gain * A_true + offset and split ``area_jitter`` into damping and noise:
    area_jitter(pred, true) mixes (1 - gain) * |dA_true| (systematic) with the residual jitter."""
    a = _np(pred_areas).astype(np.float64).reshape(-1)
    t = _np(true_areas).astype(np.float64).reshape(-1)
    if t.shape != a.shape:
        raise ClinicalError(f"area_tracking: {a.size} predicted areas but {t.size} true areas")
    tc = t - t.mean()
    if a.size < 2 or not np.any(tc):
        return AreaTracking(float("nan"), float("nan"), area_jitter(a, np.full_like(a, a.mean())))
    gain = float((tc * (a - a.mean())).sum() / (tc * tc).sum())
    offset = float(a.mean() - gain * t.mean())
    return AreaTracking(gain, offset, area_jitter(a, gain * t + offset))


def area_jitter(pred_areas: Any, true_areas: Any | None = None) -> float:
    """Frame-to-frame LV-area jitter in mm^2.

    With ground truth: mean |dA_pred - dA_true| over consecutive frames (change not explained by the
    true motion). Without: mean |second difference| of the predicted curve (smooth motion scores ~0).
    """
    a = _np(pred_areas).astype(np.float64).reshape(-1)
    if true_areas is not None:
        t = _np(true_areas).astype(np.float64).reshape(-1)
        if t.shape != a.shape:
            raise ClinicalError(f"area_jitter: {a.size} predicted areas but {t.size} true areas")
        return float(np.abs(np.diff(a) - np.diff(t)).mean()) if a.size > 1 else 0.0
    return float(np.abs(np.diff(a, 2)).mean()) if a.size > 2 else 0.0


MIN_CYCLE = 0.10        # (max - min) / max of the LV area below this: no cardiac cycle
MAX_EDGE_FRAMES = 0.25  # share of frames whose LV mask reaches the field of view's edge above this: withheld
OUTSIDE_SECTOR = 0.02   # share of a frame's LV pixels outside the scan sector that counts as reaching its edge
MIN_IOU = 0.5           # median over frames of the LV query's predicted IoU below this: withheld
MAX_ABSENT_FRAMES = 0.25  # share of frames whose LV object score says absent (logit < 0) above this: withheld


def confidence_summary(iou: Any = None, object_score: Any = None) -> dict[str, float | None] | None:
    """What the model says of its own LV mask over a sequence: ``iou_median`` (median over frames of the
    LV query's predicted IoU) and ``object_present_share`` (share of frames whose object-score logit is
    >= 0, i.e. not "absent"), each None when the model reports no such value (`iou` / `object_score`
    None or empty: e.g. decoders without an object score). None when it reports neither (an ONNX model).
    Non-finite values count as unsure: a NaN IoU as 0, a NaN object score as absent."""
    ious = None if iou is None else np.nan_to_num(_np(iou).astype(np.float64).reshape(-1), nan=0.0)
    scores = None if object_score is None else _np(object_score).astype(np.float64).reshape(-1)
    if (ious is None or not ious.size) and (scores is None or not scores.size):
        return None
    return {"iou_median": float(np.median(ious)) if ious is not None and ious.size else None,
            "object_present_share": float((scores >= 0).mean()) if scores is not None and scores.size else None}


def edge_frames(masks: Any, field_of_view: Any | None = None, label: int = 1) -> np.ndarray:
    """(T,) bool: whether each frame's LV mask reaches the edge of what was imaged: an LV pixel on the
    image's first or last row or column, or (with `field_of_view`, an (H,W) bool mask of the scan
    sector) more than ``OUTSIDE_SECTOR`` of its LV pixels outside the sector."""
    lv = _lv_masks(masks, label, "edge_frames")
    border = lv[:, 0].any(1) | lv[:, -1].any(1) | lv[:, :, 0].any(1) | lv[:, :, -1].any(1)
    if field_of_view is None:
        return np.asarray(border, bool)
    fov = _np(field_of_view).astype(bool)
    if fov.shape != lv.shape[1:]:
        raise ClinicalError(f"edge_frames: field of view {fov.shape} differs from the masks' {lv.shape[1:]}")
    outside = (lv & ~fov).sum((1, 2)) > OUTSIDE_SECTOR * np.maximum(lv.sum((1, 2)), 1)
    return np.asarray(border | outside, bool)


def withhold_reasons(areas: Any, fps: float | None, at_edge: Any = None,
                     confidence: dict[str, float | None] | None = None) -> list[str]:
    """Why EF, volumes and ED/ES of a sequence must not be reported; empty when it passes every rule.

    `areas`: the LV area per frame (any unit), `fps`: frames per second (None / NaN: unknown),
    `at_edge`: per frame, whether the LV mask reaches the image or sector edge (:func:`edge_frames`),
    `confidence`: the model's own confidence in its LV (:func:`confidence_summary`; None, or a None
    entry: not reported, that rule does not apply). Rules, each adding one reason:

    - fewer than 2 frames: no sequence to measure.
    - LV area 0 on some frame: the LV was lost, so EF would be meaningless (100 % when it vanishes at ES).
    - no cardiac cycle: (max - min) / max of the LV area below ``MIN_CYCLE`` (10 %); a beating LV
      changes its area by roughly 20-50 % between ED and ES, a still or a test pattern barely at all.
    - frame rate unknown (None, NaN or <= 0): the frames cannot be placed in time, so whether they
      span a heartbeat cannot be told.
    - LV mask at the edge on more than ``MAX_EDGE_FRAMES`` (25 %) of the frames: the LV is cut off by
      the field of view, or the mask spills over other structures (e.g. both ventricles).
    - low model confidence: the median predicted IoU of the LV under ``MIN_IOU`` (0.5), or its object
      score "absent" (logit < 0) on more than ``MAX_ABSENT_FRAMES`` (25 %) of the frames.
    """
    a = _np(areas).astype(np.float64).reshape(-1)
    if a.size < 2:
        return ["fewer than 2 frames: no sequence to measure"]
    reasons = []
    empty = np.flatnonzero(~(a > 0))
    if empty.size:
        shown = ", ".join(str(int(t)) for t in empty[:5]) + (", ..." if empty.size > 5 else "")
        reasons.append(f"LV area is 0 on {empty.size} frame(s) ({shown})")
    top = float(a.max())
    swing = (top - float(a.min())) / top if top > 0 else 0.0
    if swing < MIN_CYCLE:
        reasons.append(f"no cardiac cycle: the LV area changes by {100 * swing:.1f} % (< {100 * MIN_CYCLE:.0f} %)")
    if fps is None or not (math.isfinite(fps) and fps > 0):
        reasons.append("frame rate unknown")
    if at_edge is not None:
        edge = _np(at_edge).astype(bool).reshape(-1)
        if edge.size and edge.mean() > MAX_EDGE_FRAMES:
            reasons.append(f"LV mask reaches the image or sector edge on {int(edge.sum())} of {edge.size} frames "
                           f"(> {100 * MAX_EDGE_FRAMES:.0f} %)")
    return reasons + _confidence_reasons(confidence or {})


def _confidence_reasons(confidence: dict[str, float | None]) -> list[str]:
    iou, present = confidence.get("iou_median"), confidence.get("object_present_share")
    reasons = []
    if iou is not None and iou < MIN_IOU:
        reasons.append(f"low model confidence: median predicted IoU of the LV {iou:.2f} (< {MIN_IOU:.2f})")
    if present is not None and 1.0 - present > MAX_ABSENT_FRAMES:
        reasons.append(f"low model confidence: the model says the LV is absent on {100 * (1.0 - present):.0f} % "
                       f"of the frames (> {100 * MAX_ABSENT_FRAMES:.0f} %)")
    return reasons
