"""The component itself: built only when a recipe names it."""
import torch

from samfx.contracts.interfaces import PromptContext, PromptGenerator, Prompts


class CenterClick(PromptGenerator):
    def __init__(self, label: int):
        super().__init__()
        self.label = label

    def forward(self, ctx: PromptContext) -> Prompts:
        q, device = ctx.num_queries, ctx.class_ids.device       # Q = images x classes queries
        points = torch.full((q, 1, 2), ctx.image_size / 2, device=device)
        labels = torch.full((q, 1), self.label, device=device, dtype=torch.int)
        sparse, dense = ctx.prompt_encoder.encode(q, points=(points, labels))
        return Prompts(sparse, dense, points=points, point_labels=labels)


def build(cfg, ctx):
    return CenterClick(cfg.label)
