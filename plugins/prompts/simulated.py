"""Prompt generators that simulate a user from the ground-truth mask.

Coordinates are (x, y) = (column, row) in input pixels, as SAM's prompt encoder expects.
Training placement is random (torch's global RNG, seeded by the trainer); eval is deterministic.
An empty target gets a background click (label 0) / a zero-size box at the image centre.
``masks`` gives the whole target mask, as a user who outlines the first frame of a sequence
(semi-supervised video segmentation): that frame's output is the mask itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from samfx.contracts.errors import SamfxError
from samfx.contracts.interfaces import PromptContext, PromptGenerator, Prompts, given_mask_logits


def _need_targets(ctx: PromptContext, who: str) -> Tensor:
    if ctx.targets is None:
        raise SamfxError(f"prompt generator '{who}' simulates a user from ground truth, but this batch has "
                         f"none; use an automatic prompt (e.g. `apg` or `none`) for unlabeled images")
    return ctx.targets[:, 0] > 0.5


def _xy(flat_index: Tensor, width: int) -> Tensor:
    return torch.stack([flat_index % width, flat_index // width], dim=-1).float()


def random_pixels(mask: Tensor, n: int) -> Tensor:
    """(B,n,2) xy of pixels drawn uniformly from each mask (B,H,W); all-False rows draw uniformly."""
    b, h, w = mask.shape
    weights = mask.reshape(b, -1).float()
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
    return _xy(torch.multinomial(weights, n, replacement=True), w)


def deepest_pixel(mask: Tensor) -> Tensor:
    """(B,2) xy of the pixel farthest from the mask boundary (by repeated 3x3 erosion); ties -> first
    in raster order. Empty masks give the image centre."""
    b, h, w = mask.shape
    cur = mask.float().unsqueeze(1)
    depth = torch.zeros_like(cur)
    for _ in range(max(h, w) // 2 + 1):
        # eager stops once all is eroded; a compiled graph runs the fixed count (no data-dependent break)
        if not torch.compiler.is_compiling() and not bool(cur.any()):
            break
        depth += cur
        cur = -F.max_pool2d(-cur, 3, stride=1, padding=1)
    flat = depth.reshape(b, -1).argmax(1)
    xy = _xy(flat, w)
    empty = ~mask.reshape(b, -1).any(1)
    centre = torch.tensor([w // 2, h // 2], dtype=xy.dtype, device=xy.device)
    return torch.where(empty[:, None], centre, xy)


def mask_boxes(mask: Tensor) -> tuple[Tensor, Tensor]:
    """(boxes (B,4) float xyxy pixels, empty (B,) bool) of masks (B,H,W) bool: each mask's bounding box,
    a zero-size box at the image centre for an empty mask."""
    b, h, w = mask.shape
    rows, cols = mask.any(2), mask.any(1)
    idx_r = torch.arange(h, device=mask.device)
    idx_c = torch.arange(w, device=mask.device)
    y0 = torch.where(rows, idx_r, h).min(1).values
    y1 = torch.where(rows, idx_r, -1).max(1).values
    x0 = torch.where(cols, idx_c, w).min(1).values
    x1 = torch.where(cols, idx_c, -1).max(1).values
    box = torch.stack([x0, y0, x1, y1], 1).float()
    empty = ~mask.flatten(1).any(1)
    box[empty] = torch.tensor([w / 2, h / 2, w / 2, h / 2], device=box.device)
    return box, empty


class Clicks(PromptGenerator):
    needs_targets = True

    def __init__(self, positive: int = 1, negative: int = 0):
        super().__init__()
        if positive < 1 or negative < 0:
            raise SamfxError(f"clicks: positive must be >= 1 and negative >= 0, got {positive}, {negative}")
        self.positive, self.negative = positive, negative

    def forward(self, ctx: PromptContext) -> Prompts:
        mask = _need_targets(ctx, "clicks")
        empty = ~mask.flatten(1).any(1)
        if self.training:
            pos = random_pixels(mask, self.positive)
        else:
            pos = deepest_pixel(mask)[:, None].expand(-1, self.positive, -1).clone()
        labels = torch.ones(pos.shape[:2], device=pos.device, dtype=torch.int)
        labels[empty] = 0
        coords = [pos]
        if self.negative:
            neg = random_pixels(~mask, self.negative) if self.training else deepest_pixel(~mask)[:, None].expand(
                -1, self.negative, -1)
            coords.append(neg)
            labels = torch.cat([labels, torch.zeros(neg.shape[:2], device=pos.device, dtype=torch.int)], 1)
        points = torch.cat(coords, 1).to(ctx.class_ids.device)
        labels = labels.to(points.device)
        sparse, dense = ctx.prompt_encoder.encode(points.shape[0], points=(points, labels))
        return Prompts(sparse, dense, points=points, point_labels=labels)


class Boxes(PromptGenerator):
    needs_targets = True

    def __init__(self, jitter: float = 0.1, max_jitter_px: int = 20):
        super().__init__()
        self.jitter, self.max_jitter_px = jitter, max_jitter_px

    def forward(self, ctx: PromptContext) -> Prompts:
        mask = _need_targets(ctx, "boxes")
        b, h, w = mask.shape
        box, _ = mask_boxes(mask)
        if self.training and self.jitter > 0:
            size = torch.stack([box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]] * 2, 1)
            limit = (size * self.jitter).clamp(max=self.max_jitter_px)
            box = box + (torch.rand_like(box) * 2 - 1) * limit
            box[:, 0::2] = box[:, 0::2].clamp(0, w - 1)
            box[:, 1::2] = box[:, 1::2].clamp(0, h - 1)
        box = box.to(ctx.class_ids.device)
        return Prompts(*ctx.prompt_encoder.encode(b, boxes=box), boxes=box)


class Masks(PromptGenerator):
    """The target mask as a given mask (``Prompts.mask``), and as SAM's dense mask prompt (logits +-10 at
    4x the embedding size) so the decoder's tokens (SAM2's object pointer) see it."""

    needs_targets = True
    gives_mask = True

    def forward(self, ctx: PromptContext) -> Prompts:
        mask = _need_targets(ctx, "masks")[:, None].float()
        h, w = ctx.features.embedding.shape[-2:]
        logits = given_mask_logits(mask, (4 * h, 4 * w))
        sparse, dense = ctx.prompt_encoder.encode(ctx.num_queries, masks=logits.to(ctx.features.embedding.dtype))
        return Prompts(sparse, dense, mask=mask)


class NoPrompt(PromptGenerator):
    def forward(self, ctx: PromptContext) -> Prompts:
        return Prompts(*ctx.prompt_encoder.encode(ctx.num_queries))


def build_clicks(cfg, ctx) -> Clicks:
    return Clicks(cfg.positive, cfg.negative)


def build_boxes(cfg, ctx) -> Boxes:
    return Boxes(cfg.jitter, cfg.max_jitter_px)


def build_none(cfg, ctx) -> NoPrompt:
    return NoPrompt()


def build_masks(cfg, ctx) -> Masks:
    return Masks()
