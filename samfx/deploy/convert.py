"""``samfx convert``: a checkpoint in one layout -> another (samfx, the SAMUS/AutoSAMUS authors', SAMed, SAM, SAM2).

A file is always read into a samfx model first (its own recipe for samfx checkpoints, else ``--recipe``),
so every foreign layout goes through the same loading as training; the model is then written out in the
target layout, each component renaming its own keys (``export_foreign_state``, docs/plugins.md).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from samfx.checkpoints.files import FORMAT, model_state, read_checkpoint, save_checkpoint
from samfx.config.recipe import load_recipe
from samfx.contracts.errors import CheckpointError
from samfx.contracts.interfaces import ForeignKeys
from samfx.engine.run.checkpoints import make, recipe_of, restore_weights
from samfx.model.build import build_model
from samfx.model.roles import optional_prefixes, parts
from samfx.model.weights import load_recipe_weights

if TYPE_CHECKING:
    from samfx.config.recipe import Recipe
    from samfx.model.segmentation import SegmentationModel

LAYOUTS = ("samfx", "authors", "samed", "sam", "sam2")
# layouts whose files wrap the state dict: SAM2's official {"model": state_dict}
LAYOUT_WRAP = {"sam2": "model"}
# SAMed's file holds its LoRA, the prompt encoder and the mask decoder, never the (frozen) image encoder
LAYOUT_DROPS: dict[str, tuple[str, ...]] = {"samed": ("image_encoder.",)}


def export_state(model: SegmentationModel, fmt: str) -> dict[str, Tensor]:
    """The model's weights in layout `fmt` ("authors", "samed", "sam" or "sam2"); an error names any part the
    layout has no place for."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for part in parts(model):
        if isinstance(part.module, ForeignKeys):
            state = part.module.export_foreign_state(fmt, state, part.prefix)
    state = {k: v for k, v in state.items() if not k.startswith(LAYOUT_DROPS.get(fmt, ()))}
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
    load_recipe_weights(model, rec.config["model"], state=state, where=src)
    return model, rec


def convert(src: str | Path, fmt: str, out: str | Path, recipe: str | None = None,
            overrides: Sequence[str] = (), drop: Sequence[str] = ()) -> Path:
    """Write `src` in layout `fmt` to `out` (``.safetensors`` or ``torch.save`` by suffix); returns `out`."""

    if fmt not in LAYOUTS:
        raise CheckpointError(f"--to {fmt}: unknown layout; use one of: {', '.join(LAYOUTS)}")
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if out.resolve() == src.resolve():
        raise CheckpointError(f"--out {out}: is the input file; write the converted weights elsewhere")
    model, rec = read_model(src, recipe, overrides, drop)
    obj: dict[str, Any] = make(model, rec) if fmt == "samfx" else export_state(model, fmt)
    if fmt in LAYOUT_WRAP:
        obj = {LAYOUT_WRAP[fmt]: obj}
    save_checkpoint(obj, out)
    return out
