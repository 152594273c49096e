"""Registration of the sam2 plugin (light: neither torch nor sam2 is imported here)."""
from samfx import hookimpl
from samfx.contracts.kinds import CheckpointKind, WeightLayout
from samfx_plugins.sam2.config import Sam2EncoderConfig, Sam2MaskDecoderConfig, Sam2PromptEncoderConfig
from samfx_plugins.sam2.memory_config import Sam2MemoryConfig


@hookimpl
def samfx_register(registry):
    registry.add("image_encoder", "sam2", "samfx_plugins.sam2.encoder:build_sam2_encoder", schema=Sam2EncoderConfig,
                 description="SAM2.1's Hiera trunk (tiny/small/base_plus/large) + FPN neck; embedding at stride 16, "
                             "high-res levels at strides 4 and 8; official SAM2/SAM2.1 files load unchanged.")
    registry.add("prompt_encoder", "sam2", "samfx_plugins.sam2.decoder:build_prompt_encoder",
                 schema=Sam2PromptEncoderConfig,
                 description="SAM2's prompt encoder (points, boxes, masks), sized to the image encoder.")
    registry.add("mask_decoder", "sam2", "samfx_plugins.sam2.decoder:build_mask_decoder",
                 schema=Sam2MaskDecoderConfig,
                 description="SAM2's mask decoder: high-res features (conv_s0/conv_s1), object-score head, "
                             "multimask with SAM2's stability fallback, SAM2.1's best-of-three on tracked "
                             "clip frames (multimask_tracking), K queries per image.")
    # -- temporal module `sam2_memory` (plugins/sam2/memory*.py) registers below this line --
    registry.add("temporal_module", "sam2_memory", "samfx_plugins.sam2.memory:build_sam2_memory",
                 schema=Sam2MemoryConfig,
                 description="SAM2's memory: memory encoder + memory attention over the conditioning "
                             "(prompted) frames and the last num_maskmem-1 frames, object pointers; "
                             "bounded state; a learned gate starts it as the per-frame model unless its "
                             "weights come from a file.")


@hookimpl
def samfx_doctor():
    from samfx_plugins.sam2.kinds import doctor

    return doctor()


@hookimpl
def samfx_checkpoint_kinds() -> list[CheckpointKind]:
    from samfx_plugins.sam2.kinds import SAM2

    return [SAM2]


@hookimpl
def samfx_weight_layouts() -> list[WeightLayout]:
    from samfx_plugins.sam2.kinds import SAM2_LAYOUT

    return [SAM2_LAYOUT]
