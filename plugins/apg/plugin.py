"""Registration of the apg plugin (light: no torch import)."""
from samfx import hookimpl
from samfx.contracts.kinds import CheckpointKind
from samfx_plugins.apg.config import APGConfig


@hookimpl
def samfx_register(registry):
    registry.add("prompt_generator", "apg", "samfx_plugins.apg.module:build_apg", schema=APGConfig,
                 description="AutoSAMUS Auto Prompt Generator: prompts from decoder tokens + image embedding")


@hookimpl
def samfx_checkpoint_kinds() -> list[CheckpointKind]:
    from samfx_plugins.apg.kinds import AUTOSAMUS

    return [AUTOSAMUS]
