"""Registration of the msa_adapter plugin (light: no torch import)."""
from samfx import hookimpl
from samfx.contracts.kinds import CheckpointKind
from samfx_plugins.msa_adapter.config import MSAAdapterConfig


@hookimpl
def samfx_register(registry):
    registry.add("adapter", "msa_adapter", "samfx_plugins.msa_adapter.module:build_msa_adapter",
                 schema=MSAAdapterConfig,
                 description="Medical SAM Adapter (down-act-up) in ViT blocks; attach at blocks.* or blocks.*.mlp")


@hookimpl
def samfx_checkpoint_kinds() -> list[CheckpointKind]:
    from samfx_plugins.msa_adapter.kinds import MSA

    return [MSA]
