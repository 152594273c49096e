"""What a checkpoint file is: its layout, model size, components and the recipe that loads it.

Plugins describe the foreign layouts they read through the ``samfx_checkpoint_kinds`` hook (a list of
:class:`~samfx.contracts.kinds.CheckpointKind`); the core adds plain SAM state dicts. Torch-free
matching: a kind sees only the file's key -> shape table.
"""
from __future__ import annotations

from typing import Any

from samfx.contracts.kinds import CheckpointKind, Shapes, is_sam_state
from samfx.contracts.plugins import get_plugins

SAM = CheckpointKind(
    "SAM state dict (official SAM, MedSAM or another SAM fine-tune)", "recipes/sam_vit_b.yaml", is_sam_state,
    note="MedSAM's medsam_vit_b.pth is this kind: load it with recipes/medsam.yaml (MedSAM's [0,1] "
         "input scaling, pixel_norm: false)", priority=-100)


def components(shapes: Shapes) -> dict[str, tuple[int, int]]:
    """Top-level prefix -> (tensors, values)."""
    out: dict[str, tuple[int, int]] = {}
    for k, shape in shapes.items():
        top = k.split(".")[0]
        n = 1
        for s in shape:
            n *= s
        t, v = out.get(top, (0, 0))
        out[top] = (t + 1, v + n)
    return out


def identify(shapes: Shapes, kinds: list[CheckpointKind]) -> CheckpointKind | None:
    """The first kind (highest priority first) whose ``matches`` accepts the file; None if none does."""
    for kind in sorted([*kinds, SAM], key=lambda k: -k.priority):
        if kind.matches(shapes):
            return kind
    return None


def plugin_kinds() -> list[CheckpointKind]:
    """Every kind the loaded plugins declare."""
    found: list[Any] = []
    for declared in get_plugins().manager.hook.samfx_checkpoint_kinds():
        found.extend(declared or [])
    return found
