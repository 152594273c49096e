"""A stage's per-batch computation (forward + loss) as one module, so DDP and ``torch.compile`` see it
whole through ``__call__``: :class:`ImageStep` for images, :class:`ClipStep` for clips.

- :func:`clip_loss`: the stage's loss over every labeled frame of every clip and every class
  (queries (N*K,1,S,S)); frames marked unlabeled (padding, unknown labels) do not count.
- :class:`ClipStep`: ``step(frames (B,T,3,S,S), labels (B,T,S,S), labeled (B,T)) -> (loss, logits (B,T,K,S,S))``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from samfx.config.schema import StageSection
from samfx.contracts.errors import SamfxError
from samfx.engine.run import distributed as D

if TYPE_CHECKING:
    from samfx.model.segmentation import SegmentationModel


def object_score_loss(score: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """SAM2's object-presence term: binary cross-entropy of the decoder's object-score logits (Q or (Q,1))
    against whether each query's target (Q,1,H,W) has any foreground pixel, averaged over queries."""
    present = targets.flatten(1).amax(1)
    return nn.functional.binary_cross_entropy_with_logits(score.float().reshape(-1), present.float())


class ImageStep(nn.Module):
    """``step(images (B,3,S,S), label maps (B,S,S)) -> (loss, logits (B*K,1,S,S), aux)`` with one decoder
    query per (image, class) through ``model.forward_classes``; the prompt generator's auxiliary losses
    are added to the loss and returned detached in `aux` (name -> scalar) for logging. A decoder with
    object scores (SAM2) adds ``object_score_weight`` × :func:`object_score_loss` (aux ``object_score``)."""

    def __init__(self, model: SegmentationModel, classes: list[int], loss_fn: nn.Module,
                 object_score_weight: float = 0.0):
        super().__init__()
        self.model, self.classes, self.loss_fn = model, classes, loss_fn
        self.object_score_weight = float(object_score_weight)

    def forward(self, images: torch.Tensor, label: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        targets, out = self.model.forward_classes(images, self.classes, label)
        loss = self.loss_fn(out.logits.float(), targets)
        aux = dict(out.prompts.aux_losses)
        for value in aux.values():  # none: the loss is the stage's loss alone, bit for bit
            loss = loss + value.float()
        score = out.decoded.object_score
        if score is not None and self.object_score_weight:
            aux["object_score"] = object_score_loss(score, targets)
            loss = loss + self.object_score_weight * aux["object_score"]
        return loss, out.logits, {name: value.detach() for name, value in aux.items()}


def clip_batch_to_device(batch: dict[str, Any], device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """(frames float, labels long, labeled bool, key_frames bool or None) of a ClipDataset batch on `device`."""
    for key in ("frames", "labels", "labeled"):
        if key not in batch:
            raise SamfxError(f"clip batch has no '{key}': temporal training needs a ClipDataset "
                             f"(set data.clip_length > 0)")
    keys = batch.get("key_frames")
    return (batch["frames"].to(device, non_blocking=True).float(),
            batch["labels"].to(device, non_blocking=True).long(),
            batch["labeled"].to(device, non_blocking=True).bool(),
            None if keys is None else keys.to(device, non_blocking=True).bool())


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

    def forward(self, frames: Tensor, labels: Tensor, labeled: Tensor, key_frames: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        out = self.model.forward_clip(frames, self.classes, labels, labeled, key_frames=key_frames)
        loss = clip_loss(out, self.loss_fn)
        if self.area_change_weight:
            loss = loss + self.area_change_weight * area_change_loss(out)
        aux: dict[str, Tensor] = {}
        targets, scores = out.targets, out.object_score
        if scores is not None and targets is not None and self.object_score_weight and bool(out.labeled.any()):
            aux["object_score"] = object_score_loss(scores[out.labeled].reshape(-1),
                                                    targets[out.labeled].flatten(0, 1).unsqueeze(1))
            loss = loss + self.object_score_weight * aux["object_score"]
        return loss, out.logits, {k: v.detach() for k, v in aux.items()}


def build_step(model: SegmentationModel, classes: list[int], loss_fn: nn.Module, stage: StageSection, *, clips: bool,
               device: torch.device, compile: bool) -> nn.Module:
    """The step module of `stage`, wrapped in DDP when distributed and compiled when asked."""
    if clips:  # temporal hook: clips through model.forward_clip, loss over labeled frames
        step: nn.Module = ClipStep(model, classes, loss_fn, stage.area_change_weight, stage.object_score_weight)
    else:
        step = ImageStep(model, classes, loss_fn, stage.object_score_weight)
    if D.active():
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    return cast(nn.Module, torch.compile(step)) if compile else step  # compiling a Module gives a Module
