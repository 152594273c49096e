"""Registration of the samus plugin (light: no torch import)."""
from samfx import hookimpl
from samfx.contracts.kinds import CheckpointKind, WeightLayout
from samfx_plugins.samus.config import SamusEncoderConfig


@hookimpl
def samfx_register(registry):
    registry.add("image_encoder", "samus", "samfx_plugins.samus.encoder:build_samus_encoder",
                 schema=SamusEncoderConfig,
                 description="SAMUS encoder: SAM's ViT at 256² + CNN branch, cross-branch attention, position "
                             "and feature adapters; loads official SAM and SAMUS-authors weights.")


@hookimpl
def samfx_checkpoint_kinds() -> list[CheckpointKind]:
    from samfx_plugins.samus.kinds import SAMUS

    return [SAMUS]


@hookimpl
def samfx_weight_layouts() -> list[WeightLayout]:
    from samfx_plugins.samus.kinds import AUTHORS_LAYOUT

    return [AUTHORS_LAYOUT]
