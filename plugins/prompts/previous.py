"""Tracking by prompting: each frame of a clip prompted by the previous frame's prediction.

``prev_mask`` gives the previous frame's low-res logits as SAM's dense mask prompt; ``prev_box`` gives
the bounding box of its mask (logits > 0) in input pixels. A frame without a previous output (a clip's
first frame, or an image) is prompted by ``first``: simulated clicks or a box from the truth, or the
given mask (``masks``), exactly as those generators do.

Re-anchoring: a query whose previous output has a predicted IoU below ``min_iou``, or an object score
below ``min_object_score`` (decoders that have one, SAM2), gets no prompt on this frame (the no-mask
embedding; for boxes, SAM's two padding tokens, which stand for "no point"), so the image and the
memory alone decide it; an empty previous mask gives no box either. Prompts are built from the
previous output detached: no gradient flows back through the prompt chain (a memory still carries one).

Everything comes from the public contract: ``PromptContext.previous`` and the prompt encoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import DecoderOutput, PromptContext, PromptGenerator, Prompts
from samfx_plugins.prompts.simulated import Boxes, Clicks, Masks, mask_boxes


class FromPrevious(PromptGenerator):
    """The previous frame's output as this frame's prompt; ``first`` prompts a frame that has none."""

    uses_previous = True
    default_schedule = "every"

    def __init__(self, first: PromptGenerator, min_iou: float | None = None, min_object_score: float | None = None):
        super().__init__()
        self.first = first
        self.needs_targets, self.gives_mask = first.needs_targets, first.gives_mask
        self.min_iou, self.min_object_score = min_iou, min_object_score

    def forward(self, ctx: PromptContext) -> Prompts:
        if ctx.previous is None:
            return self.first(ctx)
        return self.from_previous(ctx, ctx.previous, self.kept(ctx.previous))

    def kept(self, prev: DecoderOutput) -> Tensor:
        """(Q,) bool: the queries whose previous output is trusted enough to prompt this frame."""
        keep = torch.ones(prev.iou.shape[0], dtype=torch.bool, device=prev.iou.device)
        if self.min_iou is not None:
            keep &= prev.iou[:, 0].detach() >= self.min_iou
        if self.min_object_score is not None and prev.object_score is not None:
            keep &= prev.object_score[:, 0].detach() >= self.min_object_score
        return keep

    def from_previous(self, ctx: PromptContext, prev: DecoderOutput, keep: Tensor) -> Prompts:
        raise NotImplementedError


class PrevMask(FromPrevious):
    def from_previous(self, ctx: PromptContext, prev: DecoderOutput, keep: Tensor) -> Prompts:
        h, w = ctx.features.embedding.shape[-2:]
        low = prev.low_res[:, :1].detach().to(ctx.features.embedding.dtype)
        if tuple(low.shape[-2:]) != (4 * h, 4 * w):   # SAM's mask prompt is 4x the embedding
            low = F.interpolate(low, size=(4 * h, 4 * w), mode="bilinear", align_corners=False)
        q = ctx.num_queries
        sparse, dense = ctx.prompt_encoder.encode(q, masks=low)
        if not bool(keep.all()):
            _, none = ctx.prompt_encoder.encode(q)
            dense = torch.where(keep[:, None, None, None], dense, none)
        return Prompts(sparse, dense)


class PrevBox(FromPrevious):
    def from_previous(self, ctx: PromptContext, prev: DecoderOutput, keep: Tensor) -> Prompts:
        mask = prev.low_res[:, 0].detach() > 0
        box, empty = mask_boxes(mask)
        sy, sx = ctx.image_size / mask.shape[-2], ctx.image_size / mask.shape[-1]
        box = torch.stack([box[:, 0] * sx, box[:, 1] * sy, (box[:, 2] + 1) * sx - 1, (box[:, 3] + 1) * sy - 1], 1)
        box = box.clamp(0, ctx.image_size - 1).to(ctx.class_ids.device)
        keep = keep & ~empty
        q = ctx.num_queries
        sparse, dense = ctx.prompt_encoder.encode(q, boxes=box)
        if not bool(keep.all()):
            pad = (torch.zeros(q, 1, 2, device=box.device), torch.full((q, 1), -1, device=box.device))
            none, _ = ctx.prompt_encoder.encode(q, points=pad)   # a padding point + the encoder's pad
            if none.shape != sparse.shape:
                raise RecipeError(f"prev_box: this prompt encoder gives {tuple(none.shape)} padding tokens for "
                                  f"{tuple(sparse.shape)} box tokens, so a dropped box cannot be padded; "
                                  f"set min_iou and min_object_score to null, or use prev_mask")
            sparse = torch.where(keep[:, None, None], sparse, none)
        return Prompts(sparse, dense, boxes=box)


def first_generator(cfg, who: str) -> PromptGenerator:
    """The generator of a clip's first frame named by ``cfg.first``."""
    if cfg.first == "clicks":
        return Clicks(cfg.positive, cfg.negative)
    if cfg.first == "boxes":
        return Boxes() if cfg.first_jitter is None else Boxes(cfg.first_jitter)
    if cfg.first == "masks":
        return Masks()
    raise RecipeError(f"{who}.first: '{cfg.first}' is not clicks, boxes or masks (how the first frame of a "
                      f"clip is prompted)")


def build_prev_mask(cfg, ctx) -> PrevMask:
    return PrevMask(first_generator(cfg, "prev_mask"), cfg.min_iou, cfg.min_object_score)


def build_prev_box(cfg, ctx) -> PrevBox:
    return PrevBox(first_generator(cfg, "prev_box"), cfg.min_iou, cfg.min_object_score)
