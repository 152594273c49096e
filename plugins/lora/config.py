"""Recipe schema of the ``lora`` adapter (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoRAConfig:
    """Low-rank update y + scale·B(A(x)) on a ``linear`` site, e.g. ``blocks.*.attn.qkv`` (SAMed).

    rank: r. alpha: scale = alpha / r (None: scale 1, as SAMed). targets: which thirds of a fused
    qkv output get their own (A, B) pair, a subset of "qkv" (SAMed: "qv"), or "all" for one pair
    over the whole output (any nn.Linear site).
    """

    rank: int = 4
    alpha: float | None = None
    targets: str = "qv"
