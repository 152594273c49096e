"""Registration only: stays light (no torch) so `samfx list-plugins` is fast."""
from dataclasses import dataclass

from samfx import hookimpl


@dataclass
class CenterClickConfig:
    label: int = 1  # 1: foreground click, 0: background click


@dataclass
class LearnedClickConfig:
    weight: float = 1.0  # weight of the auxiliary loss `click_centre` (0: none)


@dataclass
class ChannelGateConfig:
    """No options of its own; the recipe's `site:` (a glob over the encoder's sites) says where."""


@hookimpl
def samfx_register(registry):
    registry.add("prompt_generator", "center_click", "samfx_example.center:build", schema=CenterClickConfig,
                 description="One click at the image centre; needs no ground truth.")
    registry.add("prompt_generator", "learned_click", "samfx_example.learned:build", schema=LearnedClickConfig,
                 description="One click per class at a learned position, trained by an auxiliary loss.")
    registry.add("adapter", "channel_gate", "samfx_example.gate:build", schema=ChannelGateConfig,
                 description="A learned per-channel gate on a site's output (identity at start).")
