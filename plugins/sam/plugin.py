"""Registration of the sam plugin (light: no torch import)."""
from samfx import hookimpl
from samfx.contracts.kinds import CheckpointKind, WeightLayout
from samfx_plugins.sam.config import SamEncoderConfig, SamMaskDecoderConfig, SamPromptEncoderConfig


@hookimpl
def samfx_register(registry):
    registry.add("image_encoder", "sam", "samfx_plugins.sam.encoder:build_sam_encoder", schema=SamEncoderConfig,
                 description="SAM's ViT image encoder (vit_b/l/h, tiny); official SAM weights load unchanged; "
                             "all parameters trainable by default (MedSAM-style).")
    registry.add("prompt_encoder", "sam", "samfx_plugins.sam.decoder:build_prompt_encoder",
                 schema=SamPromptEncoderConfig,
                 description="SAM's prompt encoder (points, boxes, masks), sized to the image encoder.")
    registry.add("mask_decoder", "sam", "samfx_plugins.sam.decoder:build_mask_decoder",
                 schema=SamMaskDecoderConfig,
                 description="SAM's mask decoder, batched one prompt set per image, single-mask output.")


@hookimpl
def samfx_checkpoint_kinds() -> list[CheckpointKind]:
    from samfx_plugins.sam.kinds import SAM

    return [SAM]


@hookimpl
def samfx_weight_layouts() -> list[WeightLayout]:
    from samfx_plugins.sam.kinds import SAM_LAYOUT

    return [SAM_LAYOUT]
