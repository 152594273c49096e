"""SAMed's LoRA files, for ``samfx inspect``, and their layout for ``samfx convert`` (torch-free)."""
from __future__ import annotations

from samfx.contracts.kinds import CheckpointKind, Shapes, WeightLayout
from samfx_plugins.sam.kinds import model_size, size_override

SAM_MASK_TOKENS = 4  # SAM's decoder: 3 multimask outputs + 1


def _is_samed(shapes: Shapes) -> bool:
    return "w_a_000" in shapes


def _overrides(shapes: Shapes) -> list[str]:
    width = shapes["w_a_000"][1]   # the rank is read from the file by recipes/samed.yaml (rank: null)
    return ["model.base_checkpoint=~/checkpoints/sam_vit_b_01ec64.pth", *size_override(width)]


def _note(shapes: Shapes) -> str:
    tokens = shapes.get("mask_decoder.mask_tokens.weight", (SAM_MASK_TOKENS,))[0]
    base = ("the file holds no image encoder: model.base_checkpoint names the SAM weights SAMed was trained "
            "on (sam_vit_b_01ec64.pth from the segment-anything README)")
    if tokens == SAM_MASK_TOKENS:
        return base
    return (f"{base}; its decoder has {tokens} mask tokens (SAMed num_classes={tokens - 1}) but samfx's SAM "
            f"decoder has {SAM_MASK_TOKENS}, so the mask decoder will not load (docs/checkpoints.md)")


SAMED = CheckpointKind("SAMed LoRA file (save_lora_parameters: w_a_* / w_b_* + prompt encoder + mask decoder)",
                       "recipes/samed.yaml", _is_samed, overrides=_overrides, note=_note, priority=10,
                       size=model_size)

# SAMed's file holds its LoRA, the prompt encoder and the mask decoder, never the (frozen) image encoder
SAMED_LAYOUT = WeightLayout("samed", "SAMed's LoRA file (w_a_* / w_b_* + prompt_encoder.* + mask_decoder.*)",
                            drops=("image_encoder.",))
