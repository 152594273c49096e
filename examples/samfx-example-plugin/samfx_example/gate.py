"""An adapter: a learned per-channel gate on a site's output, starting as the identity."""
import torch
from torch import nn

from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import Adapter


class ChannelGate(Adapter):
    """``y * (1 + g)`` with one gate value g per channel (zero at start: the encoder is unchanged)."""

    def __init__(self, channels: int, channel_dim: int):
        super().__init__()
        self.channel_dim = channel_dim
        self.gate = nn.Parameter(torch.zeros(channels))

    def forward(self, x, y):
        shape = [1] * y.ndim
        shape[self.channel_dim] = -1
        return y * (1 + self.gate.view(shape))


def build(cfg, ctx, site):
    """Called once per matched site; the Site tells the output's layout and width."""
    if site.layout not in ("bhwc", "linear", "bchw"):
        raise RecipeError(f"adapter 'channel_gate' at site '{site.name}': unknown layout '{site.layout}'")
    return ChannelGate(site.out_dim, 1 if site.layout == "bchw" else -1)
