"""Recipe schema of the temporal module ``sam2_memory`` (torch-free: imported by plugin.py)."""
from __future__ import annotations

from dataclasses import dataclass

from samfx.contracts.bounds import bounded


@dataclass
class Sam2MemoryConfig:
    """SAM2's memory (memory encoder + memory attention + object pointers); see docs/temporal.md.

    The layers are SAM2.1's (identical in the tiny, small, base_plus and large configs), so official
    SAM2 / SAM2.1 files load into it 1:1 (``memory_attention.*``, ``memory_encoder.*``, ...). samfx adds one
    learned per-channel gate between the per-frame features and the memory's: 0 (the per-frame model)
    unless the memory comes from a file (an official one loads it open: SAM2's readout)."""
    num_maskmem: int = bounded(7, ge=1, note="SAM2: 7")     # memory frames: conditioning ones + the last num_maskmem-1
    max_obj_ptrs: int = bounded(16, ge=1, note="SAM2: 16")  # object pointers: conditioning + max_obj_ptrs-1 recent
    # Conditioning (prompted) frames kept apart, the most recent ones (SAM2's max_cond_frames_in_attn; SAM2's
    # default -1 = all, here bounded so that a clip prompted on every frame keeps a bounded state).
    max_cond_frames: int = bounded(4, ge=2, note="SAM2 keeps the closest conditioning frame before and after")
    # In eval, the memory of a prompted frame is encoded from its binarized mask (SAM2VideoPredictor's
    # post-processing `binarize_mask_from_pts_for_mem_enc`; SAM2Base's default is false).
    binarize_prompted_masks: bool = False
    use_obj_ptrs: bool = True      # false: spatial memory only (no object-pointer tokens in the attention)
    # In eval, store the spatial memories in bf16 and read them back as fp32, as SAM2VideoPredictor does
    # (half the state); training keeps them in the compute dtype. SAM2Base alone (and track_step) keeps fp32.
    bf16_memory: bool = False      # eval: spatial memories stored in bf16, as SAM2VideoPredictor
