"""The AutoSAMUS authors' checkpoints, for ``samfx inspect`` (torch-free)."""
from __future__ import annotations

from samfx.contracts.kinds import CheckpointKind, Shapes
from samfx_plugins.sam.kinds import encoder_width, model_size, size_override


def _is_autosamus(shapes: Shapes) -> bool:
    return "prompt_generator.object_token" in shapes


AUTOSAMUS = CheckpointKind(
    "AutoSAMUS (the authors' train.py: SAMUS + prompt_generator + feature_adapter)", "recipes/autosamus.yaml",
    _is_autosamus, overrides=lambda shapes: ["model.prompt.form=reference", *size_override(encoder_width(shapes))],
    note="the APG loads in samfx's reference form; export back with `samfx convert ... --to authors`",
    priority=20, size=model_size)
