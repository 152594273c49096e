"""Recipe schemas of the simulated prompts (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from samfx.contracts.bounds import bounded


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


@dataclass
class PreviousConfig:
    first: str = "clicks"      # how a clip's first frame (no previous output) is prompted: clicks | boxes | masks
    positive: int = bounded(1, ge=1)    # first: clicks: foreground clicks per query
    negative: int = bounded(0, ge=0)    # first: clicks: background clicks per query
    first_jitter: float | None = None   # first: boxes: training jitter of the box (null: the boxes default, 0.1)
    min_iou: float | None = None        # re-anchoring: no prompt where the previous predicted IoU is lower
    min_object_score: float | None = None  # re-anchoring: ... or the previous object-score logit (SAM2); null: unused
