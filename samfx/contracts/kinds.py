"""The checkpoint-kind value type: how a plugin describes a weights layout it reads.

Plugins return :class:`CheckpointKind` values from the ``samfx_checkpoint_kinds`` hook;
``samfx.checkpoints.kinds`` matches a file against them. Torch-free: a kind sees only the file's
key -> shape table.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Shapes = Mapping[str, tuple[int, ...]]
SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
# ViT width -> SAM model size (vit_b 768, vit_l 1024, vit_h 1280; samfx's test size `tiny` 96)
SIZES = {768: "vit_b", 1024: "vit_l", 1280: "vit_h", 96: "tiny"}


def _no_overrides(shapes: Shapes) -> list[str]:
    return []


@dataclass(frozen=True)
class CheckpointKind:
    """A checkpoint layout: ``matches(shapes)`` says whether a file's key -> shape table is one;
    ``recipe`` loads it with ``overrides(shapes)`` added; ``note`` (text, or a function of the shapes) is
    shown to the user; ``size(shapes)`` names the model size the file holds (default: SAM's ViT sizes,
    :func:`model_size`). Kinds with a
    higher ``priority`` are tried first (a more specific layout before the one it extends); ``command``
    is how a user loads such a file (see :meth:`how_to_load`)."""

    name: str
    recipe: str
    matches: Callable[[Shapes], bool]
    overrides: Callable[[Shapes], list[str]] = field(default=_no_overrides)
    note: str | Callable[[Shapes], str] = ""
    priority: int = 0
    command: str = "samfx train {recipe} model.checkpoint={file}{overrides}"
    size: Callable[[Shapes], str] | None = None

    def how_to_load(self, file: str, shapes: Shapes) -> str:
        """The command that loads `file` (``{file}``, ``{stem}``, ``{recipe}``, ``{overrides}`` filled in)."""
        extra = "".join(f" {o}" for o in self.overrides(shapes))
        stem = file.rsplit(".", 1)[0]
        return self.command.format(recipe=self.recipe, file=file, stem=stem, overrides=extra)

    def note_for(self, shapes: Shapes) -> str:
        return self.note(shapes) if callable(self.note) else self.note

    def size_for(self, shapes: Shapes) -> str:
        return self.size(shapes) if self.size is not None else model_size(shapes)


def is_sam_state(shapes: Shapes) -> bool:
    return bool(shapes) and all(k.startswith(SAM_PARTS) for k in shapes) and \
        "image_encoder.patch_embed.proj.weight" in shapes


def encoder_width(shapes: Shapes) -> int | None:
    """The ViT width of the file's image encoder (``pos_embed``'s last dim), None without one."""
    pos = shapes.get("image_encoder.pos_embed")
    return pos[-1] if pos else None


def size_override(width: int | None) -> list[str]:
    """``model.image_encoder.size=...`` when the ViT width says the model is not vit_b (the recipes' size)."""
    return [] if width in (None, 768) else [f"model.image_encoder.size={SIZES.get(width, width)}"]


def model_size(shapes: Shapes) -> str:
    """SAM size from the ViT encoder's width (patch embedding) and depth; '?' when there is no SAM-style
    ViT encoder (other encoders' kinds say their size through ``CheckpointKind.size``)."""
    width_key = next((k for k in shapes if k.endswith("patch_embed.proj.weight")), None)
    if width_key is None:
        return "? (no image encoder in the file)"
    if not any(k.startswith(("image_encoder.blocks.", "blocks.")) for k in shapes):
        return "? (not a SAM ViT encoder)"
    width = shapes[width_key][0]
    depth = len({k.split(".")[2] for k in shapes if k.startswith("image_encoder.blocks.")})
    return f"{SIZES.get(width, 'unknown')} (ViT width {width}, {depth} blocks)"
