"""Plain SAM state dicts and SAM's ViT size naming, for ``samfx inspect`` (torch-free).

Other plugins whose files hold a SAM ViT encoder (SAMUS, AutoSAMUS, SAMed, Medical-SAM-Adapter, MemSAM)
name their size and their ``model.image_encoder.size`` override with these helpers.
"""
from __future__ import annotations

from samfx.contracts.kinds import CheckpointKind, Shapes, WeightLayout

SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
# ViT width -> SAM model size (vit_b 768, vit_l 1024, vit_h 1280; samfx's test size `tiny` 96)
SIZES = {768: "vit_b", 1024: "vit_l", 1280: "vit_h", 96: "tiny"}


def is_sam_state(shapes: Shapes) -> bool:
    return bool(shapes) and all(k.startswith(SAM_PARTS) for k in shapes) and \
        "image_encoder.patch_embed.proj.weight" in shapes


def encoder_width(shapes: Shapes) -> int | None:
    """The ViT width of the file's image encoder (``pos_embed``'s last dim), None without one."""
    pos = shapes.get("image_encoder.pos_embed")
    return pos[-1] if pos else None


def size_override(width: int | None) -> list[str]:
    """``model.image_encoder.size=...`` when the ViT width says the model is not vit_b (the recipes' size)."""
    return [] if width in (None, 768) else [f"model.image_encoder.size={SIZES.get(width, width)}"]


def model_size(shapes: Shapes) -> str:
    """SAM size from the ViT encoder's width (patch embedding) and depth; '?' when there is no SAM-style
    ViT encoder (other encoders' kinds say their size through ``CheckpointKind.size``)."""
    width_key = next((k for k in shapes if k.endswith("patch_embed.proj.weight")), None)
    if width_key is None:
        return "? (no image encoder in the file)"
    if not any(k.startswith(("image_encoder.blocks.", "blocks.")) for k in shapes):
        return "? (not a SAM ViT encoder)"
    width = shapes[width_key][0]
    depth = len({k.split(".")[2] for k in shapes if k.startswith("image_encoder.blocks.")})
    return f"{SIZES.get(width, 'unknown')} (ViT width {width}, {depth} blocks)"


SAM = CheckpointKind(
    "SAM state dict (official SAM, MedSAM or another SAM fine-tune)", "recipes/sam_vit_b.yaml", is_sam_state,
    note="MedSAM's medsam_vit_b.pth is this kind: load it with recipes/medsam.yaml (MedSAM's [0,1] "
         "input scaling, pixel_norm: false)", priority=-100, size=model_size, size_fallback=True)

SAM_LAYOUT = WeightLayout("sam", "a plain SAM state dict (image_encoder.*, prompt_encoder.*, mask_decoder.*)")
