"""Key names of official SAM2 / SAM2.1 checkpoints (``{"model": state_dict}``) and who owns them.

``image_encoder.trunk.*`` / ``image_encoder.neck.*`` are samfx's names already; ``sam_prompt_encoder.*``
and ``sam_mask_decoder.*`` map to ``prompt_encoder.*`` / ``mask_decoder.*``. ``no_mem_embed`` belongs to
the image encoder in image mode (``no_memory_embed: true``), else to the temporal module. The other
top-level names are SAM2's memory (:data:`MEMORY_KEYS`): the temporal module ``sam2_memory`` claims
them; an image-mode encoder drops what is left of them (SAM2ImagePredictor never uses them).
"""
from __future__ import annotations

from torch import Tensor

PROMPT_ENCODER = "sam_prompt_encoder."
MASK_DECODER = "sam_mask_decoder."
NO_MEM_EMBED = "no_mem_embed"
# Top-level names of SAM2Base's memory parts (modules end with '.', parameters are whole keys).
MEMORY_KEYS = ("memory_attention.", "memory_encoder.", "mask_downsample.", "obj_ptr_proj.", "obj_ptr_tpos_proj.",
               "maskmem_tpos_enc", "no_mem_pos_enc", "no_obj_ptr", "no_obj_embed_spatial", NO_MEM_EMBED)


def is_memory_key(key: str) -> bool:
    return any(key.startswith(p) if p.endswith(".") else key == p for p in MEMORY_KEYS)


def rename_prefix(state: dict[str, Tensor], old: str, new: str) -> dict[str, Tensor]:
    """`state` with the keys under `old` moved under `new` (other keys unchanged, order kept)."""
    return {(new + k[len(old):] if k.startswith(old) else k): v for k, v in state.items()}


def is_sam2_file(state: dict[str, Tensor]) -> bool:
    """Whether `state` is in SAM2's own layout (as opposed to samfx's or another project's)."""
    return any(k.startswith((PROMPT_ENCODER, MASK_DECODER)) for k in state)
