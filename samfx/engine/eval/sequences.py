"""Sequence evaluation for temporal models (``data.clip_length > 0``; clip training is
``samfx.engine.train.steps``).

- :func:`evaluate_sequences`: whole sequences through ``forward_clip`` (streamed frame by frame),
  per-frame Dice, LV area curves, area jitter and EF (samfx.engine.eval.clinical) per sequence.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor

from samfx.config.schedule import prompted_frames
from samfx.engine.eval.clinical import analyze_clip, area_jitter, area_tracking, lv_areas
from samfx.engine.eval.inference import autocast, labels_from_logits
from samfx.engine.eval.metrics import dice, hd95
from samfx.model.clips import truth_frames

if TYPE_CHECKING:
    from samfx.contracts.interfaces import PromptGenerator
    from samfx.model.segmentation import SegmentationModel


@torch.no_grad()
def segment_sequence(model: SegmentationModel, frames: Tensor, classes: list[int], labels: Tensor | None = None,
                     prompt: str | None = None, precision: str = "fp32", key_frames: Tensor | None = None) -> Tensor:
    """Label maps (T,S,S) uint8 of one sequence (frames (T,3,S,S)), streamed frame by frame;
    ``key_frames`` (T,) bool: its ED and ES frames (the ``ed_es`` prompt schedule)."""

    maps: list[Tensor] = []

    def keep(t: int, out: Any) -> None:  # one frame's K queries -> its label map
        maps.append(labels_from_logits(out.logits, 1, classes)[0][0].to(torch.uint8).cpu())

    with autocast(precision, frames.device):
        model.forward_clip(frames[None], classes, None if labels is None else labels[None], prompt=prompt,
                           on_frame=keep, key_frames=None if key_frames is None else key_frames[None])
    return torch.stack(maps)


def key_frames(num_frames: int, item: dict[str, Any]) -> Tensor:
    """(T,) bool: a sequence item's ED and ES frames (its ``ed`` / ``es``, -1 or absent: unknown)."""
    keys = torch.zeros(num_frames, dtype=torch.bool)
    for name in ("ed", "es"):
        t = int(item.get(name, -1))
        if 0 <= t < num_frames:
            keys[t] = True
    return keys


@dataclass(frozen=True)
class SequenceScoring:
    """What evaluate_sequences scores: ``lv_label`` is the class of the LV (area curves, jitter, EF);
    ``hd95=False`` skips the distances (Dice keys only)."""

    lv_label: int = 1
    hd95: bool = True


def evaluate_sequences(model: SegmentationModel, dataset: Any, classes: list[int], device: torch.device,
                       prompt: str | None = None, precision: str = "fp32", limit: int | None = None,
                       scoring: SequenceScoring | None = None) -> dict[str, Any]:
    """Per-sequence and mean metrics of a SequenceDataset: per class, Dice and HD95 (mm) on every labeled
    frame and on the ED/ES frames; LV-area jitter (predicted vs ground-truth frame-to-frame change, mm^2)
    split by ``area_tracking`` into the LV-area gain (damping) and the residual (noise) jitter; EF from the
    predicted masks (single-plane area-length) against the EF of the ground-truth masks and the stored EF;
    the forward's wall time per frame (ms). With a prompt that gives the mask (``masks``: semi-supervised),
    the given frames are not scored in Dice/HD95 (they are the truth), as in video object segmentation
    benchmarks; the area curves, jitter and EF keep them. ``scoring``: LV class and whether to compute
    HD95 (default SequenceScoring(): LV is class 1, with HD95; validation reads only the Dice)."""

    scoring = scoring or SequenceScoring()
    lv_label, with_hd95 = scoring.lv_label, scoring.hd95
    model.eval()
    rows = []
    gen = cast("PromptGenerator", model.prompt_generators[prompt or model.active_prompt])
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        item = dataset[i]
        frames, labels = item["frames"].to(device).float(), item["labels"].long()
        labeled = item["labeled"].bool()
        keys = key_frames(len(frames), item)
        start = time.perf_counter()
        pred = segment_sequence(model, frames, classes, labels.to(device) if gen.needs_targets else None, prompt,
                                precision, keys.to(device))
        seconds = time.perf_counter() - start
        spacing = item["spacing"].double().reshape(-1).numpy()
        scored = labeled.numpy().copy()
        if gen.gives_mask:  # the frames it gives are the truth
            schedule = prompted_frames(model.prompt_schedule(prompt), len(pred), torch.nonzero(keys).flatten().tolist())
            scored[truth_frames(gen, schedule)] = False
        row: dict[str, Any] = {"id": item.get("id"), "frames": int(len(pred)), "seconds": seconds,
                               "scored_frames": int(scored.sum()),
                               **_frame_scores(pred.numpy(), labels.numpy(), scored, spacing, classes,
                                               [int(item.get("ed", -1)), int(item.get("es", -1))], with_hd95)}
        if lv_label in classes and bool(np.all(np.isfinite(spacing))):
            row.update(_area_curves(pred.numpy(), labels.numpy(), labeled.numpy(), spacing, lv_label, item))
        if lv_label in classes and labeled.all() and bool(np.all(np.isfinite(spacing))):
            p = analyze_clip(pred.numpy(), spacing, lv_label)
            g = analyze_clip(labels.numpy(), spacing, lv_label)
            fit = area_tracking(p.areas, g.areas)
            row.update(jitter_mm2=area_jitter(p.areas, g.areas), lv_area_gain=fit.gain,
                       jitter_residual_mm2=fit.residual_jitter, ef_pred=p.ef, ef_gt_masks=g.ef,
                       ef_stored=float(item["ef"]) if "ef" in item else math.nan,
                       ed_pred=p.ed, es_pred=p.es, ed_gt=g.ed, es_gt=g.es)
        rows.append(row)
    return {"sequences": rows, "summary": summarize_sequences(rows, classes)}


def _frame_scores(pred: np.ndarray, labels: np.ndarray, labeled: np.ndarray, spacing: np.ndarray,
                  classes: list[int], ed_es: list[int], with_hd95: bool = True) -> dict[str, Any]:
    """Per class: mean Dice and HD95 over the labeled frames, and over the labeled ED/ES frames ("_edes").
    HD95 is in mm (pixels without a finite spacing); a frame where exactly one of prediction and truth
    is empty has an infinite HD95: it is left out of the mean and counted in ``hd95_inf``. Without
    ``with_hd95`` only the Dice keys."""

    sp = [float(x) for x in spacing] if bool(np.all(np.isfinite(spacing))) else None
    frames = [t for t in range(len(pred)) if labeled[t]]
    key_frames = [t for t in frames if t in ed_es]
    out: dict[str, Any] = {"dice": {}, "dice_edes": {}}
    if with_hd95:
        out.update(hd95={}, hd95_edes={}, hd95_inf={})
    for c in classes:
        d = {t: dice(pred[t] == c, labels[t] == c) for t in frames}
        out["dice"][c] = _finite_mean(d.values())
        out["dice_edes"][c] = _finite_mean(d[t] for t in key_frames)
        if with_hd95:
            h = {t: hd95(pred[t] == c, labels[t] == c, sp) for t in frames}
            out["hd95"][c] = _finite_mean(h.values())
            out["hd95_edes"][c] = _finite_mean(h[t] for t in key_frames)
            out["hd95_inf"][c] = sum(1 for v in h.values() if math.isinf(v))
    return out


def _finite_mean(values: Any) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _area_curves(pred: np.ndarray, labels: np.ndarray, labeled: np.ndarray, spacing: np.ndarray, lv_label: int,
                 item: dict[str, Any]) -> dict[str, Any]:
    """LV area per frame (mm^2), predicted and true (NaN on unlabeled frames), and the stored ED/ES
    (-1 unknown), for the run report's area curves."""

    true = lv_areas(labels, spacing, lv_label)
    true[~labeled] = math.nan
    return {"lv_area_pred_mm2": lv_areas(pred, spacing, lv_label).tolist(), "lv_area_gt_mm2": true.tolist(),
            "ed_stored": int(item.get("ed", -1)), "es_stored": int(item.get("es", -1))}


def summarize_sequences(rows: list[dict[str, Any]], classes: list[int]) -> dict[str, Any]:
    """Means over sequences (NaN-free values only; counts of NaN / infinite cases reported)."""
    out: dict[str, Any] = {"n": len(rows)}
    with_hd95 = any("hd95" in r for r in rows)
    for c in classes:
        for key in ("dice", "hd95", "dice_edes", "hd95_edes") if with_hd95 else ("dice", "dice_edes"):
            out[f"{key}_{c}"] = _finite_mean(r[key][c] for r in rows if key in r)
        if with_hd95:
            out[f"hd95_inf_frames_{c}"] = sum(r["hd95_inf"][c] for r in rows if "hd95_inf" in r)
    frames = sum(r["frames"] for r in rows if "seconds" in r)
    out["ms_per_frame"] = 1000.0 * sum(r["seconds"] for r in rows if "seconds" in r) / frames if frames else math.nan
    if any("jitter_mm2" in r for r in rows):
        ef = [r for r in rows if "ef_pred" in r]
        out["jitter_mm2"] = _finite_mean(r["jitter_mm2"] for r in ef)
        out["jitter_residual_mm2"] = _finite_mean(r["jitter_residual_mm2"] for r in ef)
        out["lv_area_gain"] = _finite_mean(r["lv_area_gain"] for r in ef)
        out["ef_mae_vs_gt_masks"] = _finite_mean(abs(r["ef_pred"] - r["ef_gt_masks"]) for r in ef)
        out["ef_mae_vs_stored"] = _finite_mean(abs(r["ef_pred"] - r["ef_stored"]) for r in ef)
        out["ef_undefined"] = sum(1 for r in ef if not math.isfinite(r["ef_pred"]))
    return out
