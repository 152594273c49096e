"""Recipe schema of the space-time memory (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from samfx.contracts.bounds import bounded


@dataclass
class STMConfig:
    """XMem/MemSAM-style space-time memory; see docs/temporal.md."""
    key_dim: int = bounded(64, ge=1)        # key projection of the image embedding (C -> key_dim)
    value_dim: int = bounded(64, ge=1)      # value channels per memory position (SAM2 uses 64)
    mask_channels: int = bounded(16, ge=1)  # width of the mask branch of the value encoder
    # >0: a ConvGRU hidden state carried frame to frame (MemSAM/XMem)
    hidden_dim: int = bounded(0, ge=0, note="0 disables the hidden state")
    memory_frames: int = bounded(6, ge=0)   # bank = first frame + the last `memory_frames` written frames
    keep_first: bool = True                 # keep the (prompted) first frame in the bank for the whole clip
    write_every: int = bounded(1, ge=1)     # store every n-th frame in the bank (the hidden state updates every frame)
    affinity: str = "l2"                    # "l2" (negative squared distance, STCN) or "dot" (scaled dot product)
    inject: str = "dense"                   # readout enters the decoder as "dense" prompt, fused "embedding", or "both"
    out_init_std: float = 0.01              # init std of the last readout projection (small: starts near memoryless)
