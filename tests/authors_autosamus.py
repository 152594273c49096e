"""A reference of the AutoSAMUS authors' prompt generator and dense-prompt convs, written from their
published layer definitions (module names, shapes and ops only), for parity tests: its state dict
has exactly their key layout, and its forward computes what their model computes."""
from __future__ import annotations

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import Tensor, nn


def softmax_one(x: Tensor, dim: int) -> Tensor:
    x = x - x.max(dim=dim, keepdim=True).values
    e = torch.exp(x)
    return e / (1 + e.sum(dim=dim, keepdim=True))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, qx: Tensor, kx: Tensor) -> Tensor:
        def heads(t: Tensor) -> Tensor:
            return t.view(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        q = heads(self.to_q(qx))
        k, v = (heads(t) for t in self.to_kv(kx).chunk(2, dim=-1))
        attn = softmax_one(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        out = (attn @ v).transpose(1, 2).flatten(2)
        return self.to_out(out)


class PreNorm2in(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm1, self.norm2, self.fn = nn.LayerNorm(dim), nn.LayerNorm(dim), fn

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.fn(self.norm1(x1), self.norm2(x2))


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CrossTransformer(nn.Module):
    def __init__(self, dim: int, depth: int = 2, mlp_dim: int = 1024):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([
            PreNorm2in(dim, Attention(dim)), PreNorm2in(dim, Attention(dim)),
            PreNorm(dim, FeedForward(dim, mlp_dim)), PreNorm(dim, FeedForward(dim, mlp_dim))]) for _ in range(depth))

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        for attn1, attn2, ff1, ff2 in self.layers:
            a1, a2 = attn1(x1, x2), attn2(x2, x1)
            x1, x2 = a1 + x1, a2 + x2
            x1, x2 = ff1(x1) + x1, ff2(x2) + x2
        return x1, x2


class PromptGenerator(nn.Module):
    def __init__(self, dim: int = 256):
        super().__init__()
        self.object_token = nn.Parameter(torch.randn(1, 50, dim))
        self.cross_token_token = CrossTransformer(dim)
        self.token_proj = nn.Linear(dim, dim)
        self.cross_image_token = CrossTransformer(dim)

    def forward(self, img: Tensor, output_token: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = img.shape
        img = img.flatten(2).transpose(1, 2)
        obj, _ = self.cross_token_token(self.object_token.expand(b, -1, -1), output_token)
        obj = self.token_proj(obj) + self.object_token
        tokens = torch.cat([obj, output_token], dim=1)
        new_img, tokens = self.cross_image_token(img, tokens)
        return new_img.transpose(1, 2).reshape(b, c, h, w), tokens[:, :1]


class AuthorsAPG(nn.Module):
    """The two parts of their model the APG form covers: ``prompt_generator`` and ``feature_adapter``."""

    def __init__(self, dim: int = 256):
        super().__init__()
        self.prompt_generator = PromptGenerator(dim)
        r = dim // 4
        layers: list[nn.Module] = []
        for cin, cout in [(dim, r), (r, r), (r, r), (r, dim)]:
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), LayerNorm2d(cout), nn.GELU()]
        self.feature_adapter = nn.Sequential(*layers)

    def randomize(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                noise = torch.randn(p.shape, generator=g)
                p.copy_(1 + 0.1 * noise if "norm" in name and name.endswith("weight") else 0.1 * noise)
