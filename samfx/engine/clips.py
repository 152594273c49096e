"""Clip training and sequence evaluation for temporal models (``data.clip_length > 0``).

- :func:`clip_loss`: the stage's loss over every labeled frame of every clip and every class
  (queries (N*K,1,S,S)); frames marked unlabeled (padding, unknown labels) do not count.
- :class:`ClipStep`: forward + loss in one module, the clip counterpart of :class:`samfx.engine.steps.ImageStep`
  (``step(frames (B,T,3,S,S), labels (B,T,S,S), labeled (B,T)) -> (loss, logits (B,T,K,S,S))``).
- :func:`evaluate_sequences`: whole sequences through ``forward_clip`` (streamed frame by frame),
  per-frame Dice, LV area curves, area jitter and EF (samfx.clinical) per sequence.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from samfx.errors import SamfxError

if TYPE_CHECKING:
    from samfx.interfaces import PromptGenerator
    from samfx.model import SegmentationModel


def clip_batch_to_device(batch: dict[str, Any], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(frames float, labels long, labeled bool) of a ClipDataset batch on `device`."""
    for key in ("frames", "labels", "labeled"):
        if key not in batch:
            raise SamfxError(f"clip batch has no '{key}': temporal training needs a ClipDataset "
                             f"(set data.clip_length > 0)")
    return (batch["frames"].to(device, non_blocking=True).float(),
            batch["labels"].to(device, non_blocking=True).long(),
            batch["labeled"].to(device, non_blocking=True).bool())


def clip_loss(out: Any, loss_fn: nn.Module) -> Tensor:
    """``loss_fn(logits, targets)`` over all labeled (clip, frame) pairs and all classes of a ClipOutput."""
    if out.logits is None or out.targets is None:
        raise SamfxError("clip_loss: the ClipOutput has no logits/targets; call forward_clip with labels "
                         "and without on_frame")
    sel = out.labeled
    if not bool(sel.any()):
        # no labeled frame in the batch: a zero loss that still touches the graph (DDP-safe)
        return out.logits.float().sum() * 0.0
    logits = out.logits[sel].flatten(0, 1).unsqueeze(1)       # (N*K,1,S,S)
    targets = out.targets[sel].flatten(0, 1).unsqueeze(1)
    return loss_fn(logits.float(), targets)


def area_change_loss(out: Any) -> Tensor:
    """Frame-to-frame area change not explained by the true motion, per (clip, class) query:
    mean over consecutive labeled frame pairs of |dA_pred - dA_true| / mean true area, with the
    predicted area soft (mean sigmoid over the frame). The training counterpart of the LV-area
    jitter that :func:`evaluate_sequences` reports; 0 for clips with fewer than two labeled frames."""
    pred = torch.sigmoid(out.logits.float()).mean((-2, -1))       # (B,T,K) area fractions
    true = out.targets.float().mean((-2, -1))
    labeled = out.labeled.unsqueeze(-1).float()                   # (B,T,1)
    pairs = labeled[:, 1:] * labeled[:, :-1]
    change = ((pred[:, 1:] - pred[:, :-1]) - (true[:, 1:] - true[:, :-1])).abs()
    # (B,1,K): the structure's mean size over the labeled frames
    scale = ((true * labeled).sum(1, keepdim=True) / labeled.sum(1, keepdim=True).clamp_min(1.0)).clamp_min(1e-3)
    weights = pairs.expand_as(change)
    return (change / scale * weights).sum() / weights.sum().clamp_min(1.0)


class ClipStep(nn.Module):
    """Forward + clip loss in one module, so DDP sees the whole computation through ``__call__``.
    ``area_change_weight`` > 0 adds that multiple of :func:`area_change_loss`; ``object_score_weight`` that
    multiple of the object-presence term over the labeled frames, when the decoder has object scores (SAM2)."""

    def __init__(self, model: SegmentationModel, classes: list[int], loss_fn: nn.Module,
                 area_change_weight: float = 0.0, object_score_weight: float = 0.0):
        super().__init__()
        self.model, self.classes, self.loss_fn = model, classes, loss_fn
        self.area_change_weight = float(area_change_weight)
        self.object_score_weight = float(object_score_weight)

    def forward(self, frames: Tensor, labels: Tensor, labeled: Tensor
                ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        out = self.model.forward_clip(frames, self.classes, labels, labeled)
        loss = clip_loss(out, self.loss_fn)
        if self.area_change_weight:
            loss = loss + self.area_change_weight * area_change_loss(out)
        aux: dict[str, Tensor] = {}
        targets, scores = out.targets, out.object_score
        if scores is not None and targets is not None and self.object_score_weight and bool(out.labeled.any()):
            from samfx.engine.steps import object_score_loss

            aux["object_score"] = object_score_loss(scores[out.labeled].reshape(-1),
                                                    targets[out.labeled].flatten(0, 1).unsqueeze(1))
            loss = loss + self.object_score_weight * aux["object_score"]
        return loss, out.logits, {k: v.detach() for k, v in aux.items()}


@torch.no_grad()
def segment_sequence(model: SegmentationModel, frames: Tensor, classes: list[int], labels: Tensor | None = None,
                     prompt: str | None = None, precision: str = "fp32") -> Tensor:
    """Label maps (T,S,S) uint8 of one sequence (frames (T,3,S,S)), streamed frame by frame."""
    from samfx.engine.inference import autocast, labels_from_logits

    maps: list[Tensor] = []

    def keep(t: int, out: Any) -> None:  # one frame's K queries -> its label map
        maps.append(labels_from_logits(out.logits, 1, classes)[0][0].to(torch.uint8).cpu())

    with autocast(precision, frames.device):
        model.forward_clip(frames[None], classes, None if labels is None else labels[None], prompt=prompt,
                           on_frame=keep)
    return torch.stack(maps)


def evaluate_sequences(model: SegmentationModel, dataset: Any, classes: list[int], device: torch.device,
                       prompt: str | None = None, lv_label: int = 1, precision: str = "fp32",
                       limit: int | None = None, hd95: bool = True) -> dict[str, Any]:
    """Per-sequence and mean metrics of a SequenceDataset: per class, Dice and HD95 (mm) on every labeled
    frame and on the ED/ES frames; LV-area jitter (predicted vs ground-truth frame-to-frame change, mm^2)
    split by ``area_tracking`` into the LV-area gain (damping) and the residual (noise) jitter; EF from the
    predicted masks (single-plane area-length) against the EF of the ground-truth masks and the stored EF;
    the forward's wall time per frame (ms). With a prompt that gives the mask (``masks``: semi-supervised),
    the given frames are not scored in Dice/HD95 (they are the truth), as in video object segmentation
    benchmarks; the area curves, jitter and EF keep them. ``hd95=False`` skips the distances (validation
    reads only the Dice)."""
    from samfx.clinical import analyze_clip, area_jitter, area_tracking
    from samfx.clip_forward import prompt_schedule

    model.eval()
    rows = []
    gen = cast("PromptGenerator", model.prompt_generators[prompt or model.active_prompt])
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        item = dataset[i]
        frames, labels = item["frames"].to(device).float(), item["labels"].long()
        labeled = item["labeled"].bool()
        start = time.perf_counter()
        pred = segment_sequence(model, frames, classes, labels.to(device) if gen.needs_targets else None, prompt,
                                precision)
        seconds = time.perf_counter() - start
        spacing = item["spacing"].double().reshape(-1).numpy()
        scored = labeled.numpy().copy()
        if gen.gives_mask:
            scored &= ~np.array(prompt_schedule(len(pred), gen.needs_targets, None))
        row: dict[str, Any] = {"id": item.get("id"), "frames": int(len(pred)), "seconds": seconds,
                               "scored_frames": int(scored.sum()),
                               **_frame_scores(pred.numpy(), labels.numpy(), scored, spacing, classes,
                                               [int(item.get("ed", -1)), int(item.get("es", -1))], hd95)}
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
    from samfx.metrics import dice, hd95

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
    from samfx.clinical import lv_areas

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
