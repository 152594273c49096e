"""``samfx convert``: a checkpoint in one layout -> another (samfx's own, or a layout a plugin writes).

A file is always read into a samfx model first (its own recipe for samfx checkpoints, else ``--recipe``),
so every foreign layout goes through the same loading as training; the model is then written out in the
target layout, each component renaming its own keys (``export_foreign_state``, docs/plugins.md). The
foreign layouts are the plugins' ``samfx_weight_layouts`` (:class:`~samfx.contracts.kinds.WeightLayout`).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from samfx.checkpoints.files import FORMAT, model_state, read_checkpoint, save_checkpoint
from samfx.config.recipe import load_recipe
from samfx.contracts.errors import CheckpointError, did_you_mean
from samfx.contracts.interfaces import ForeignKeys
from samfx.contracts.kinds import WeightLayout
from samfx.contracts.plugins import get_plugins
from samfx.engine.run.checkpoints import make, recipe_of, restore_weights
from samfx.model.build import build_model
from samfx.model.roles import optional_prefixes, parts
from samfx.model.weights import load_recipe_weights

if TYPE_CHECKING:
    from samfx.config.recipe import Recipe
    from samfx.model.segmentation import SegmentationModel

SAMFX = "samfx"   # the core's own layout: a samfx checkpoint (weights + recipe)


def weight_layouts() -> dict[str, WeightLayout]:
    """Name -> layout, for every layout the loaded plugins write (``samfx_weight_layouts``), by name."""
    found: list[WeightLayout] = []
    for declared in get_plugins().manager.hook.samfx_weight_layouts():
        found.extend(declared or [])
    return {layout.name: layout for layout in sorted(found, key=lambda layout: layout.name)}


def _layout(fmt: str, layouts: dict[str, WeightLayout]) -> WeightLayout | None:
    """`fmt`'s layout (None for samfx's own); an unknown name is a one-line error listing the known ones."""
    if fmt == SAMFX:
        return None
    if fmt not in layouts:
        known = [SAMFX, *layouts]
        raise CheckpointError(f"--to {fmt}: unknown layout{did_you_mean(fmt, known)}; use one of: {', '.join(known)}")
    return layouts[fmt]


def export_state(model: SegmentationModel, fmt: str) -> dict[str, Tensor]:
    """The model's weights in the plugin layout `fmt` (e.g. "authors", "samed", "sam", "sam2": see
    :func:`weight_layouts`); an error names any part the layout has no place for."""
    layout = _layout(fmt, weight_layouts())
    if layout is None:
        raise CheckpointError(f"--to {SAMFX}: a samfx checkpoint carries its recipe; use convert(), not export_state()")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for part in parts(model):
        if isinstance(part.module, ForeignKeys):
            state = part.module.export_foreign_state(fmt, state, part.prefix)
    state = {k: v for k, v in state.items() if not k.startswith(layout.drops)}
    left = [k for k in state if k.startswith(optional_prefixes())]
    if left:
        raise CheckpointError(f"{len(left)} weights have no place in the '{fmt}' layout, first: "
                              f"{', '.join(left[:3])}; convert --to samfx keeps everything")
    return state


def _drop(state: dict[str, Tensor], patterns: Sequence[str]) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if not any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def read_model(src: Path, recipe: str | None, overrides: Sequence[str],
               drop: Sequence[str]) -> tuple[SegmentationModel, Recipe]:
    """(model, recipe) holding `src`'s weights: samfx checkpoints rebuild their own recipe; any other
    file is loaded into `recipe` (+ `overrides`) exactly as ``model.checkpoint`` would load it."""

    obj = read_checkpoint(src)
    state = _drop(model_state(obj, src), drop)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if recipe is None:
        if obj.get("format") != FORMAT or "recipe" not in obj:
            raise CheckpointError(f"{src}: not a samfx checkpoint, so convert needs --recipe (the recipe that "
                                  f"loads it; `samfx inspect {src}` names it)")
        rec = recipe_of(obj)
        model = build_model(rec, load_checkpoint=False, weight_shapes=lambda: shapes)
        restore_weights(model, state, src, "convert --drop removes weights the model needs; use --recipe")
        return model, rec
    rec = load_recipe(recipe, [*overrides, "model.checkpoint=null"])
    model = build_model(rec, load_checkpoint=False, weight_shapes=lambda: shapes)
    load_recipe_weights(model, rec.typed.model, state=state, where=src)
    return model, rec


def convert(src: str | Path, fmt: str, out: str | Path, recipe: str | None = None,
            overrides: Sequence[str] = (), drop: Sequence[str] = ()) -> Path:
    """Write `src` in layout `fmt` to `out` (``.safetensors`` or ``torch.save`` by suffix); returns `out`."""

    layout = _layout(fmt, weight_layouts())
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if out.resolve() == src.resolve():
        raise CheckpointError(f"--out {out}: is the input file; write the converted weights elsewhere")
    model, rec = read_model(src, recipe, overrides, drop)
    obj: dict[str, Any] = make(model, rec) if layout is None else export_state(model, fmt)
    if layout is not None and layout.wrap is not None:
        obj = {layout.wrap: obj}
    save_checkpoint(obj, out)
    return out
