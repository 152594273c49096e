"""Recipe schema of the ``msa_adapter`` adapter (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MSAAdapterConfig:
    """Medical SAM Adapter bottleneck down -> act -> up, attached to ViT blocks.

    mode: ``parallel`` y + scale·A(x) (on ``blocks.N.mlp``: next to the MLP, x = norm2 output),
    ``serial`` y + scale·A(y) (on ``blocks.N``: after the block), ``auto``: parallel on ``*.mlp``
    sites, serial elsewhere. ratio: bottleneck width / ViT width. scale: None -> 0.5 parallel,
    1.0 serial (as MSA). act: relu | gelu. The up projection starts at zero (identity at init).
    """

    mode: str = "auto"
    ratio: float = 0.25
    scale: float | None = None
    act: str = "relu"
