"""A stage's per-batch computation (forward + loss) as one module, so DDP and ``torch.compile`` see it
whole through ``__call__``: :class:`ImageStep` for images, :class:`samfx.engine.clips.ClipStep` for clips."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from samfx.engine import distributed as D

if TYPE_CHECKING:
    from samfx.model import SegmentationModel


class ImageStep(nn.Module):
    """``step(images (B,3,S,S), label maps (B,S,S)) -> (loss, logits (B*K,1,S,S), aux)`` with one decoder
    query per (image, class) through ``model.forward_classes``; the prompt generator's auxiliary losses
    are added to the loss and returned detached in `aux` (name -> scalar) for logging."""

    def __init__(self, model: SegmentationModel, classes: list[int], loss_fn: nn.Module):
        super().__init__()
        self.model, self.classes, self.loss_fn = model, classes, loss_fn

    def forward(self, images: torch.Tensor, label: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        targets, out = self.model.forward_classes(images, self.classes, label)
        loss = self.loss_fn(out.logits.float(), targets)
        aux = out.prompts.aux_losses
        for value in aux.values():  # none: the loss is the stage's loss alone, bit for bit
            loss = loss + value.float()
        return loss, out.logits, {name: value.detach() for name, value in aux.items()}


def build_step(model: SegmentationModel, classes: list[int], loss_fn: nn.Module, stage: dict[str, Any], *, clips: bool,
               device: torch.device, compile: bool) -> nn.Module:
    """The step module of `stage`, wrapped in DDP when distributed and compiled when asked."""
    if clips:  # temporal hook: clips through model.forward_clip, loss over labeled frames
        from samfx.engine.clips import ClipStep

        step: nn.Module = ClipStep(model, classes, loss_fn, float(stage["area_change_weight"]))
    else:
        step = ImageStep(model, classes, loss_fn)
    if D.active():
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    return cast(nn.Module, torch.compile(step)) if compile else step  # compiling a Module gives a Module
