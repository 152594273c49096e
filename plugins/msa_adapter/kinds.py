"""Medical-SAM-Adapter checkpoints, for ``samfx inspect`` (torch-free)."""
from __future__ import annotations

from samfx.contracts.kinds import CheckpointKind, Shapes
from samfx_plugins.sam.kinds import encoder_width, model_size, size_override


def _is_msa(shapes: Shapes) -> bool:
    return any(".MLP_Adapter.D_fc1." in k for k in shapes) and any(".Space_Adapter.D_fc1." in k for k in shapes)


MSA = CheckpointKind(
    "Medical-SAM-Adapter (SAM + MLP_Adapter / Space_Adapter / Depth_Adapter per block)", "recipes/msa.yaml",
    _is_msa, overrides=lambda shapes: size_override(encoder_width(shapes)),
    note="Depth_Adapter (MSA's 3-D branch) never runs on 2-D images and is not loaded", priority=10, size=model_size)
