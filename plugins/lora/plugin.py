"""Registration of the lora plugin (light: no torch import)."""
from samfx import hookimpl
from samfx.contracts.kinds import CheckpointKind, WeightLayout
from samfx_plugins.lora.config import LoRAConfig


@hookimpl
def samfx_register(registry):
    registry.add("adapter", "lora", "samfx_plugins.lora.module:build_lora", schema=LoRAConfig,
                 description="LoRA on a ViT's qkv projection (SAMed); attach at blocks.*.attn.qkv")


@hookimpl
def samfx_checkpoint_kinds() -> list[CheckpointKind]:
    from samfx_plugins.lora.kinds import SAMED

    return [SAMED]


@hookimpl
def samfx_weight_layouts() -> list[WeightLayout]:
    from samfx_plugins.lora.kinds import SAMED_LAYOUT

    return [SAMED_LAYOUT]
