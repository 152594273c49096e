"""LoRA adapter (SAMed): y + scale·B(A(x)) on the output of an nn.Linear site, B zero-initialised."""
from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from samfx.contracts.errors import CheckpointError, RecipeError
from samfx.contracts.interfaces import Adapter, BuildContext, Site
from samfx_plugins.lora import samed
from samfx_plugins.lora.config import LoRAConfig

DEFAULT_RANK = 4  # SAMed's


class LoRA(Adapter):
    """One (A, B) pair per target slice of the output; starts as the identity (B = 0)."""

    def __init__(self, in_dim: int, out_dim: int, rank: int = 4, scale: float = 1.0, targets: str = "qv",
                 site: str = ""):
        super().__init__()
        self.site, self.rank, self.targets = site, rank, targets
        if targets == "all":
            self.slices = [(0, out_dim)]
        else:
            part = out_dim // 3
            self.slices = [("qkv".index(t) * part, part) for t in targets]
        self.scale = scale
        self.a = nn.ModuleList(nn.Linear(in_dim, rank, bias=False) for _ in self.slices)
        self.b = nn.ModuleList(nn.Linear(rank, size, bias=False) for _, size in self.slices)
        for b in self.b:
            nn.init.zeros_(cast(nn.Linear, b).weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if len(self.slices) == 1 and self.slices[0][1] == y.shape[-1]:
            return y + self.scale * self.b[0](self.a[0](x))
        delta = torch.zeros_like(y)
        for (start, size), a, b in zip(self.slices, self.a, self.b):
            delta[..., start:start + size] = self.scale * b(a(x))
        return y + delta

    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """Read this block's q / v pairs from a SAMed LoRA file (``w_a_*`` / ``w_b_*``)."""
        if not samed.is_samed(state):
            return state
        samed.check_fits(state, self.rank, self.targets, self.scale)
        names = {theirs: prefix + mine for mine, theirs in samed.pair_names(self.site).items()}
        return {names.get(k, k): v for k, v in state.items()}

    def export_foreign_state(self, fmt: str, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """``samed``: this adapter's pairs as SAMed's ``w_a_*`` / ``w_b_*``."""
        if fmt != "samed":
            return state
        names = {prefix + mine: theirs for mine, theirs in samed.pair_names(self.site).items()}
        if self.targets != "qv" or self.scale != 1.0:
            raise CheckpointError(f"SAMed's layout holds LoRA with targets qv and scale 1, adapter at "
                                  f"'{self.site}' has targets {self.targets}, scale {self.scale:g}")
        return {names.get(k, k): v for k, v in state.items()}

def build_lora(config: LoRAConfig, ctx: BuildContext, site: Site) -> LoRA:
    where = f"adapter 'lora' at site '{site.name}'"
    if site.layout != "linear":
        raise RecipeError(f"{where}: needs a 'linear' site (an nn.Linear such as blocks.N.attn.qkv), "
                          f"this one is '{site.layout}'")
    rank = config.rank if config.rank is not None else rank_from_weights(ctx, site.name)
    if rank < 1:
        raise RecipeError(f"{where}: rank must be >= 1, got {rank}")
    t = config.targets
    if t != "all":
        if not t or any(c not in "qkv" for c in t) or len(set(t)) != len(t):
            raise RecipeError(f"{where}: targets '{t}' must be distinct letters of 'qkv' (e.g. 'qv') or 'all'")
        if site.out_dim % 3:
            raise RecipeError(f"{where}: targets '{t}' need a fused qkv output (width divisible by 3), "
                              f"got width {site.out_dim}; use targets: all")
    scale = 1.0 if config.alpha is None else config.alpha / rank
    return LoRA(site.in_dim, site.out_dim, rank, scale, t, site.name)


def rank_from_weights(ctx: BuildContext, site: str) -> int:
    """``rank: null``: the rank of the weights the model will receive (BuildContext "weight_shapes"), else 4."""
    shapes = ctx.weight_shapes
    found = samed.rank_in(shapes(), site) if shapes is not None else None
    return found if found is not None else DEFAULT_RANK
