"""The checkpoint value types: how a plugin describes a weights layout it reads, and one it writes.

Plugins return :class:`CheckpointKind` values from the ``samfx_checkpoint_kinds`` hook;
``samfx.checkpoints.kinds`` matches a file against them. Torch-free: a kind sees only the file's
key -> shape table. Plugins return :class:`WeightLayout` values from the ``samfx_weight_layouts`` hook;
``samfx convert --to NAME`` writes a model in one of them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Shapes = Mapping[str, tuple[int, ...]]
UNKNOWN_SIZE = "?"


def _no_overrides(shapes: Shapes) -> list[str]:
    return []


@dataclass(frozen=True)
class CheckpointKind:
    """A checkpoint layout: ``matches(shapes)`` says whether a file's key -> shape table is one;
    ``recipe`` loads it with ``overrides(shapes)`` added; ``note`` (text, or a function of the shapes) is
    shown to the user; ``size(shapes)`` names the model size the file holds (None: the kind cannot tell,
    shown as ``?``). ``size_fallback``: this kind's ``size`` also names the size of a file that no kind
    matches (a samfx checkpoint); the highest-priority such kind is asked (the sam plugin's SAM kind sets
    it). Kinds with a higher ``priority`` are tried first (a more specific layout before the one it
    extends); ``command`` is how a user loads such a file (see :meth:`how_to_load`)."""

    name: str
    recipe: str
    matches: Callable[[Shapes], bool]
    overrides: Callable[[Shapes], list[str]] = field(default=_no_overrides)
    note: str | Callable[[Shapes], str] = ""
    priority: int = 0
    command: str = "samfx train {recipe} model.checkpoint={file}{overrides}"
    size: Callable[[Shapes], str] | None = None
    size_fallback: bool = False

    def how_to_load(self, file: str, shapes: Shapes) -> str:
        """The command that loads `file` (``{file}``, ``{stem}``, ``{recipe}``, ``{overrides}`` filled in)."""
        extra = "".join(f" {o}" for o in self.overrides(shapes))
        stem = file.rsplit(".", 1)[0]
        return self.command.format(recipe=self.recipe, file=file, stem=stem, overrides=extra)

    def note_for(self, shapes: Shapes) -> str:
        return self.note(shapes) if callable(self.note) else self.note

    def size_for(self, shapes: Shapes) -> str:
        return self.size(shapes) if self.size is not None else UNKNOWN_SIZE


@dataclass(frozen=True)
class WeightLayout:
    """A layout ``samfx convert --to NAME`` writes: another project's state dict. ``description`` says
    what the file holds (one line). The model's state dict is first renamed by every component's
    ``export_foreign_state(name, state, prefix)``; keys starting with one of ``drops`` are then left out
    (parts the layout never holds, e.g. a frozen encoder); ``wrap`` (a key, or None) writes the file as
    ``{wrap: state}`` instead of the bare state dict."""

    name: str
    description: str
    drops: tuple[str, ...] = ()
    wrap: str | None = None
