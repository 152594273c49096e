"""MemSAM checkpoints, for ``samfx inspect`` (torch-free)."""
from __future__ import annotations

from samfx.contracts.kinds import CheckpointKind, Shapes
from samfx_plugins.sam.kinds import model_size


def _is_memsam(shapes: Shapes) -> bool:
    return any(k.startswith("memory.value_encoder.") for k in shapes)


MEMSAM = CheckpointKind(
    "MemSAM (SAMUS + its XMem-style memory under memory.*)", "recipes/samus_stm.yaml", _is_memsam,
    note="its memory does not map onto samfx's stm (docs/checkpoints.md): keep the SAMUS part, the memory "
         "starts fresh", priority=30, size=model_size,
    command="samfx convert {file} --drop 'memory.*' --to authors --recipe recipes/samus.yaml "
            "--out {stem}_samus.pth && samfx train {recipe} model.checkpoint={stem}_samus.pth")
