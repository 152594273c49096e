"""The SAMUS authors' checkpoints, for ``samfx inspect``, and their layout for ``samfx convert`` (torch-free)."""
from __future__ import annotations

from samfx.contracts.kinds import CheckpointKind, Shapes, WeightLayout
from samfx_plugins.sam.kinds import encoder_width, model_size, size_override


def _is_samus(shapes: Shapes) -> bool:
    return any(k.startswith("image_encoder.cnn_embed.") for k in shapes) and \
        not any(k.startswith(("prompt_generator.", "memory.")) for k in shapes)


SAMUS = CheckpointKind(
    "SAMUS (the authors' train.py)", "recipes/samus.yaml", _is_samus,
    overrides=lambda shapes: size_override(encoder_width(shapes)), priority=10, size=model_size)

AUTHORS_LAYOUT = WeightLayout("authors", "the SAMUS / AutoSAMUS authors' state dict (their train.py's keys)")
