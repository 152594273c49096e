"""The component itself: built only when a recipe names it."""
import torch

from samfx.interfaces import PromptContext, PromptGenerator, Prompts


class CenterClick(PromptGenerator):
    def __init__(self, label: int):
        super().__init__()
        self.label = label

    def forward(self, ctx: PromptContext) -> Prompts:
        b = ctx.image_embedding.shape[0]
        device = ctx.image_embedding.device
        points = torch.full((b, 1, 2), ctx.image_size / 2, device=device)
        labels = torch.full((b, 1), self.label, device=device, dtype=torch.int)
        sparse, dense = ctx.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        return Prompts(sparse, dense.expand(b, -1, -1, -1) if dense.shape[0] == 1 else dense, points=points,
                       point_labels=labels)


def build(cfg, ctx):
    return CenterClick(cfg.label)
