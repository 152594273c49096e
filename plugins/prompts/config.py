"""Recipe schemas of the simulated prompts (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClicksConfig:
    positive: int = 1          # foreground clicks per query
    negative: int = 0          # extra background clicks per query
    seed_eval: int = 0         # unused by the deterministic eval placement; kept for symmetry


@dataclass
class BoxesConfig:
    jitter: float = 0.1        # training: each side moves by up to this fraction of the box size
    max_jitter_px: int = 20    # ... and at most this many pixels (as in SAM's training)


@dataclass
class MasksConfig:
    pass


@dataclass
class NoPromptConfig:
    pass
