"""The MSFF module of the reproduction report, as a samfx adapter on a (B,C,H,W) site.

    b0 = BasicConv1x1(y);  sq = Conv1x1(y)
    x1 = BasicConv3x3_d1(sq); x2 = BasicConv3x3_d2(sq + x1); x3 = BasicConv3x3_d3(sq + x2)
    out = ReLU(b0 + x3)            (padding = dilation, so H, W are kept)

The output replaces the site's output (same channels).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import Adapter, BuildContext, Site


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at each pixel of a (B,C,H,W) map (as SAM's LayerNorm2d)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / (var + self.eps).sqrt()
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def basic_conv(cin: int, cout: int, k: int, dilation: int, norm: str) -> nn.Sequential:
    pad = dilation * (k // 2)
    conv = nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=norm == "none")
    if norm == "batch":
        return nn.Sequential(conv, nn.BatchNorm2d(cout))
    if norm == "layer":
        return nn.Sequential(conv, LayerNorm2d(cout))
    return nn.Sequential(conv)


class MSFF(Adapter):
    def __init__(self, channels: int, dilations: list[int], norm: str = "batch"):
        super().__init__()
        if norm not in ("batch", "layer", "none"):
            raise RecipeError(f"msff.norm: '{norm}' is not one of batch, layer, none")
        if not dilations or any(d < 1 for d in dilations):
            raise RecipeError(f"msff.dilations: need positive dilations, got {dilations}")
        self.branch0 = basic_conv(channels, channels, 1, 1, norm)
        self.squeeze = nn.Conv2d(channels, channels, 1)
        self.cascade = nn.ModuleList(basic_conv(channels, channels, 3, d, norm) for d in dilations)
        self.act = nn.ReLU(inplace=False)

    def fuse(self, y: Tensor) -> Tensor:
        sq = self.squeeze(y)
        x = self.cascade[0](sq)
        for conv in self.cascade[1:]:
            x = conv(sq + x)
        return self.act(self.branch0(y) + x)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.fuse(y)


def msff_cost(channels: int, height: int, width: int, dilations: int = 3) -> tuple[int, int]:
    """(conv weights, multiply-accumulates) of one MSFF at a C x H x W site, BatchNorm excluded."""
    weights = 2 * channels * channels + dilations * 9 * channels * channels
    return weights, weights * height * width


def build_msff(cfg, ctx: BuildContext, site: Site) -> MSFF:
    if site.layout != "bchw":
        raise RecipeError(f"msff: site '{site.name}' has layout '{site.layout}'; MSFF needs a feature map "
                          f"(bchw) site such as 'cnn.out'")
    return MSFF(site.out_dim, list(cfg.dilations), cfg.norm)
