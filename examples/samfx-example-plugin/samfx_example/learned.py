"""A prompt generator with a training loss of its own (Prompts.aux_losses)."""
import torch
from torch import nn

from samfx.contracts.interfaces import PromptContext, PromptGenerator, Prompts


class LearnedClick(PromptGenerator):
    """One foreground click per class at a learned position; in training, an auxiliary loss pulls
    that position towards the centre of mass of the class's ground truth."""

    def __init__(self, num_classes: int, weight: float):
        super().__init__()
        self.weight = weight
        self.position = nn.Embedding(num_classes + 1, 2)  # per class id: (x, y) as a fraction of S
        nn.init.zeros_(self.position.weight)

    def forward(self, ctx: PromptContext) -> Prompts:
        q = ctx.num_queries
        xy = torch.sigmoid(self.position(ctx.class_ids))              # (Q,2) in (0,1), 0.5 at start
        points = (xy * ctx.image_size).unsqueeze(1)                   # (Q,1,2) pixels
        labels = torch.ones((q, 1), dtype=torch.int, device=points.device)
        sparse, dense = ctx.prompt_encoder.encode(q, points=(points, labels))
        prompts = Prompts(sparse, dense, points=points, point_labels=labels)
        if self.training and ctx.targets is not None and self.weight > 0:
            prompts.aux_losses["click_centre"] = self.weight * _centre_loss(xy, ctx.targets)
        return prompts


def _centre_loss(xy, targets):
    """Mean squared distance (in fractions of S) from xy (B,2) to each target's centre of mass."""
    s = targets.shape[-1]
    grid = (torch.arange(s, device=targets.device, dtype=torch.float32) + 0.5) / s
    mass = targets[:, 0].float()                                       # (B,S,S)
    total = mass.sum((1, 2))
    present = total > 0                                                # empty targets have no centre
    if not bool(present.any()):
        return xy.sum() * 0.0
    cx = (mass * grid[None, None, :]).sum((1, 2)) / total.clamp_min(1)
    cy = (mass * grid[None, :, None]).sum((1, 2)) / total.clamp_min(1)
    centre = torch.stack([cx, cy], 1)
    return ((xy - centre) ** 2).sum(1)[present].mean()


def build(cfg, ctx):
    return LearnedClick(ctx.num_classes, cfg.weight)
