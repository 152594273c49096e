"""A stage's per-batch computation (forward + loss) as one module, so DDP and ``torch.compile`` see it
whole through ``__call__``: :class:`ImageStep` for images, :class:`samfx.engine.clips.ClipStep` for clips."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from samfx.engine import distributed as D

if TYPE_CHECKING:
    from samfx.model import SegmentationModel


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


def build_step(model: SegmentationModel, classes: list[int], loss_fn: nn.Module, stage: dict[str, Any], *, clips: bool,
               device: torch.device, compile: bool) -> nn.Module:
    """The step module of `stage`, wrapped in DDP when distributed and compiled when asked."""
    if clips:  # temporal hook: clips through model.forward_clip, loss over labeled frames
        from samfx.engine.clips import ClipStep

        step: nn.Module = ClipStep(model, classes, loss_fn, float(stage["area_change_weight"]),
                                   float(stage["object_score_weight"]))
    else:
        step = ImageStep(model, classes, loss_fn, float(stage["object_score_weight"]))
    if D.active():
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    return cast(nn.Module, torch.compile(step)) if compile else step  # compiling a Module gives a Module
