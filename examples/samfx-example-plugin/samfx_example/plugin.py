"""Registration only: stays light (no torch) so `samfx list-plugins` is fast."""
from dataclasses import dataclass

from samfx import hookimpl


@dataclass
class CenterClickConfig:
    label: int = 1  # 1: foreground click, 0: background click


@hookimpl
def samfx_register(registry):
    registry.add("prompt_generator", "center_click", "samfx_example.center:build", schema=CenterClickConfig,
                 description="One click at the image centre; needs no ground truth.")
