"""Registration of the stm plugin (light: no torch import)."""
from samfx import hookimpl
from samfx.contracts.kinds import CheckpointKind
from samfx_plugins.stm.config import STMConfig


@hookimpl
def samfx_register(registry):
    registry.add("temporal_module", "stm", "samfx_plugins.stm.memory:build_stm", schema=STMConfig,
                 description="Space-time memory (XMem/MemSAM-style): keys from the image embedding, values "
                             "from embedding + predicted probabilities, bounded bank (first + last N frames), "
                             "readout as extra dense prompt and/or fused embedding.")


@hookimpl
def samfx_checkpoint_kinds() -> list[CheckpointKind]:
    from samfx_plugins.stm.kinds import MEMSAM

    return [MEMSAM]
