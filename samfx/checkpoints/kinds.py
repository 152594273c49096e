"""What a checkpoint file is: its layout, model size, components and the recipe that loads it.

Plugins describe the foreign layouts they read through the ``samfx_checkpoint_kinds`` hook (a list of
:class:`~samfx.contracts.kinds.CheckpointKind`; plain SAM state dicts are the sam plugin's). Torch-free
matching: a kind sees only the file's key -> shape table.
"""
from __future__ import annotations

from typing import Any

from samfx.contracts.kinds import UNKNOWN_SIZE, CheckpointKind, Shapes
from samfx.contracts.plugins import get_plugins


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
    for kind in sorted(kinds, key=lambda k: -k.priority):
        if kind.matches(shapes):
            return kind
    return None


def model_size(shapes: Shapes, kind: CheckpointKind | None, kinds: list[CheckpointKind]) -> str:
    """The model size the file holds: its `kind`'s ``size``; for a file no kind matches (`kind` None), the
    ``size`` of the highest-priority kind with ``size_fallback``; ``?`` when none can tell."""
    if kind is not None:
        return kind.size_for(shapes)
    fallback = next((k for k in sorted(kinds, key=lambda k: -k.priority) if k.size_fallback), None)
    return fallback.size_for(shapes) if fallback is not None else UNKNOWN_SIZE


def plugin_kinds() -> list[CheckpointKind]:
    """Every kind the loaded plugins declare."""
    found: list[Any] = []
    for declared in get_plugins().manager.hook.samfx_checkpoint_kinds():
        found.extend(declared or [])
    return found
