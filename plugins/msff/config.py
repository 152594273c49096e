"""Recipe schema of the MSFF adapter (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MSFFConfig:
    dilations: list[int] = field(default_factory=lambda: [6, 12, 18])
    # "batch": BasicConv2d = Conv(bias=False) + BatchNorm, the common form (the report does not show it);
    # "layer": Conv(bias=False) + LayerNorm2d, like SAMUS's CNN branch; "none": Conv(bias=True).
    norm: str = "batch"
