"""Recipe schema of the `samus` plugin (torch-free: imported by plugin.py)."""
from __future__ import annotations

from dataclasses import dataclass

from samfx_plugins.sam.config import PROMPT_DIM

# Channels of the CNN branch's first three stages (the last stage outputs the ViT width).
CNN_WIDTHS: dict[str, tuple[int, int, int]] = {"tiny": (16, 32, 64)}
DEFAULT_CNN_WIDTHS = (64, 128, 256)   # the SAMUS authors'
IMAGE_SIZES = (128, 256, 512)         # S/8 tokens must pool SAM's 64x64 position grid by a power of 2


@dataclass
class SamusEncoderConfig:
    size: str = "vit_b"            # SAM size underneath: vit_b | vit_l | vit_h | tiny
    image_size: int = 256          # input side S (SAMUS: 256 -> 32x32 tokens)
    fast_attention: bool = True    # scaled_dot_product_attention in the ViT blocks (CBA always uses it)
    pixel_norm: bool = False       # SAMUS feeds [0,1] intensities without SAM's mean/std (authors' choice)
    out_dim: int = PROMPT_DIM      # neck output = prompt/decoder width; SAM's is 256 (small values for CPU demos)
