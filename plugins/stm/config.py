"""Recipe schema of the space-time memory (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class STMConfig:
    """XMem/MemSAM-style space-time memory; see docs/temporal.md."""
    key_dim: int = 64            # key projection of the image embedding (C -> key_dim)
    value_dim: int = 64          # value channels per memory position (SAM2 uses 64)
    mask_channels: int = 16      # width of the mask branch of the value encoder
    hidden_dim: int = 0          # >0: a ConvGRU hidden state carried frame to frame (MemSAM/XMem)
    memory_frames: int = 6       # bank = first frame + the last `memory_frames` written frames
    keep_first: bool = True      # keep the (prompted) first frame in the bank for the whole clip
    write_every: int = 1         # store every n-th frame in the bank (the hidden state updates every frame)
    affinity: str = "l2"         # "l2" (negative squared distance, STCN) or "dot" (scaled dot product)
    inject: str = "dense"        # readout enters the decoder as "dense" prompt, fused "embedding", or "both"
    out_init_std: float = 0.01   # init std of the last readout projection (small: starts near the memoryless model)
