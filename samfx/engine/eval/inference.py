"""Shared forward helpers: precision contexts, batches to device, and the one forward -> per-class logits
-> label map path (:func:`predict_classes`; clips stream frame by frame through :func:`labels_from_logits`)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from samfx.contracts.errors import RecipeError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, fp32 on CPU. fp16 needs CUDA."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in {"fp32", "bf16", "fp16"}:
        raise RecipeError(f"train.precision: unknown precision '{precision}'; use auto, fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise RecipeError("train.precision: fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def to_device(batch: dict[str, Any], device: torch.device) -> tuple[Tensor, Tensor | None]:
    """(images, label maps) of an image batch, or (frames (B,T,3,S,S), labels (B,T,S,S)) of a clip batch."""
    clip = "frames" in batch
    images = batch["frames" if clip else "image"].to(device, non_blocking=True).float()
    label = batch.get("labels" if clip else "label")
    return images, (label.to(device, non_blocking=True).long() if label is not None else None)


def label_map(logits: Tensor, classes: list[int]) -> Tensor:
    """Per-class logits (B,K,S,S) -> label map (B,S,S): the class with the highest logit where it is
    above 0 (probability 0.5), else background 0."""
    best, idx = logits.max(dim=1)
    ids = torch.tensor(classes, device=logits.device, dtype=torch.long)[idx]
    return torch.where(best > 0, ids, torch.zeros_like(ids))


def per_class_logits(out_logits: Tensor, batch_size: int, n_classes: int) -> Tensor:
    """forward_classes' (B*K,1,S,S) image-major logits -> (B,K,S,S)."""
    return out_logits.float().reshape(batch_size, n_classes, *out_logits.shape[-2:])


def labels_from_logits(out_logits: Tensor, batch_size: int, classes: list[int],
                       size: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """A SegOutput's (B*K,1,S,S) logits -> (label maps (B,S,S), per-class fp32 logits (B,K,S,S)).

    `size`: first resize the per-class logits bilinearly to (H,W), giving label maps at the input's own
    resolution (predict); the logits returned are then the resized ones."""
    logits = per_class_logits(out_logits, batch_size, len(classes))
    if size is not None:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return label_map(logits, classes), logits


@dataclass
class ClassPrediction:
    """What :func:`predict_classes` returns."""

    labels: Tensor    # label maps (B,S,S) long, or (B,H,W) with `size`
    logits: Tensor    # per-class fp32 logits (B,K,S,S), or (B,K,H,W) with `size`
    targets: Tensor   # forward_classes' binary targets (B*K,1,S,S); empty without a label map
    out: Any          # forward_classes' SegOutput (raw logits (B*K,1,S,S), auxiliary losses...)


@torch.no_grad()
def predict_classes(model: Any, images: Tensor, classes: list[int], label: Tensor | None = None, *,
                    prompt: str | None = None, precision: str = "fp32",
                    size: tuple[int, int] | None = None) -> ClassPrediction:
    """Every class of a batch (B,3,S,S) in one ``forward_classes`` under `precision`'s autocast, then
    per-class logits and label maps (:func:`label_map`: highest logit above 0, else background).

    The one forward -> label-map path of eval, validation, overlays and predict. `label` feeds
    simulated prompts (clicks, boxes) and the targets; automatic prompts ignore it. `prompt` None uses
    the model's active prompt generator. `size` resizes the logits before the label map.
    """
    with autocast(precision, images.device):
        targets, out = model.forward_classes(images, classes, label, prompt=prompt)
    labels, logits = labels_from_logits(out.logits, images.shape[0], classes, size)
    return ClassPrediction(labels, logits, targets, out)


@dataclass
class QueryConfidence:
    """Collects, frame by frame, what the model says of one query's mask: its predicted IoU and (SAM2)
    its object-score logit. ``query``: the query's index among the K per image (the class's index in
    ``classes``). ``object_score`` becomes None once a frame comes without one (the decoder has none)."""

    query: int
    iou: list[float] = field(default_factory=list)
    object_score: list[float] | None = field(default_factory=list)

    def add(self, out: Any, batch_size: int, n_classes: int) -> None:
        """Record the `batch_size` frames of a SegOutput over B*K image-major queries (iou (B*K,M): the
        first mask's; ``decoded.object_score`` (B*K,1) or None)."""
        iou = out.iou.detach().float().reshape(batch_size, n_classes, -1)[:, self.query, 0]
        self.iou.extend(iou.cpu().tolist())
        score = getattr(getattr(out, "decoded", None), "object_score", None)
        if score is None or self.object_score is None:
            self.object_score = None
            return
        self.object_score.extend(score.detach().float().reshape(batch_size, n_classes, -1)[:, self.query, 0]
                                 .cpu().tolist())
