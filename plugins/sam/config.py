"""Recipe schemas and size presets of the `sam` plugin (torch-free: imported by plugin.py)."""
from __future__ import annotations

from dataclasses import dataclass

# ViT geometry per size: width, depth, heads, global-attention block indices, window side.
# vit_b/l/h are SAM's (segment_anything.build_sam); `tiny` is samfx's own, for tests and demos.
SIZES: dict[str, dict] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11),
              "window_size": 14},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23),
              "window_size": 14},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31),
              "window_size": 14},
    "tiny": {"embed_dim": 96, "depth": 4, "num_heads": 3, "global_attn_indexes": (1, 3), "window_size": 8},
}
PROMPT_DIM = 256  # SAM's prompt / decoder width (the encoder neck's output channels)


@dataclass
class SamEncoderConfig:
    size: str = "vit_b"            # vit_b | vit_l | vit_h | tiny
    image_size: int = 1024         # input side S; tokens S/16 (pos_embed / rel-pos resized on load)
    fast_attention: bool = True    # scaled_dot_product_attention with rel-pos as additive bias
    pixel_norm: bool = True        # apply SAM's pixel mean/std to [0,1] inputs (official SAM weights expect it)
    out_dim: int = PROMPT_DIM      # neck output = prompt/decoder width; SAM's is 256 (small values for CPU demos)


@dataclass
class SamPromptEncoderConfig:
    mask_in_chans: int = 16        # hidden channels of the dense (mask) prompt path, as in SAM


@dataclass
class SamMaskDecoderConfig:
    transformer_depth: int = 2     # SAM's two-way transformer
    mlp_dim: int = 2048
    num_heads: int = 8
