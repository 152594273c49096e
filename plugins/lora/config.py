"""Recipe schema of the ``lora`` adapter (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoRAConfig:
    """Low-rank update y + scale·B(A(x)) on a ``linear`` site, e.g. ``blocks.*.attn.qkv`` (SAMed).

    rank: r; None: the rank of the LoRA weights the model is given (a SAMed file or samfx checkpoint in
    ``model.checkpoint``), else 4 (SAMed's). alpha: scale = alpha / r (None: scale 1, as SAMed).
    targets: which thirds of a fused qkv output get their own (A, B) pair, a subset of "qkv" (SAMed:
    "qv"), or "all" for one pair over the whole output (any nn.Linear site).
    """

    rank: int | None = None
    alpha: float | None = None
    targets: str = "qv"
