"""Load weights into a built model: official SAM / SAMUS-authors / samfx files, base then top file.

Foreign layouts (the SAMUS / AutoSAMUS authors', SAMed, MSA...) are mapped by the components that
own those weights: the encoder's ``convert_state_dict`` and every other component's
``import_foreign_state`` (docs/plugins.md); the core knows no foreign key. Reading the files is
``samfx.checkpoints.files``.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from samfx.checkpoints.files import check_values, model_state, read_checkpoint
from samfx.contracts.errors import CheckpointError
from samfx.contracts.interfaces import ForeignKeys
from samfx.model.roles import allowed_missing_from_base, parts

if TYPE_CHECKING:
    from samfx.config.schema import ModelSection
    from samfx.model.segmentation import SegmentationModel


def _split(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _shape(t: Tensor) -> str:
    return "(" + ",".join(str(s) for s in t.shape) + ")"


def import_foreign(model: SegmentationModel, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Let each component rename the foreign keys it owns (``import_foreign_state(state, prefix)``)."""
    for part in parts(model):
        if isinstance(part.module, ForeignKeys):
            state = part.module.import_foreign_state(state, part.prefix)
    return state


def convert_parts(model: SegmentationModel, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each component's ``convert_state_dict`` on its part of `state` (keys relative to it)."""
    out = dict(state)
    for part in parts(model):
        if not isinstance(part.module, ForeignKeys):
            continue
        mine = _split(out, part.prefix)
        if not mine:
            continue
        out = {k: v for k, v in out.items() if not k.startswith(part.prefix)}
        out.update({part.prefix + k: v for k, v in part.module.convert_state_dict(mine).items()})
    return out


def load_weights(model: SegmentationModel, path: str | Path, allow_missing: Sequence[str] = (),
                 loaded: Sequence[str] = ()) -> dict[str, list[str]]:
    """Load SAM / SAMUS-authors / samfx weights into a SegmentationModel.

    Each component converts its part (``convert_state_dict``: e.g. rel-pos resizing, key maps).
    Keys the model adds by design (components' ``new_parameter_prefixes``, prompt generators,
    adapters, temporal: ``samfx.model.roles``) may be missing; any other missing, unexpected or mis-shaped key is an
    error naming the file and the first offenders, and so is a value of the wrong kind or not finite
    (``check_values``); keys in `loaded` (filled by an earlier file, e.g.
    ``model.base_checkpoint``) do not count as missing. Returns {"missing": [...], "loaded": [...]}.
    """
    return load_state(model, model_state(read_checkpoint(path), path), path, allow_missing, loaded)


def load_state(model: SegmentationModel, state: dict[str, Tensor], path: str | Path, allow_missing: Sequence[str] = (),
               loaded: Sequence[str] = ()) -> dict[str, list[str]]:
    """:func:`load_weights` for a state dict already read from `path` (named in errors)."""
    converted = convert_parts(model, state)
    try:
        converted = import_foreign(model, converted)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None

    own = model.state_dict()
    unexpected = [k for k in converted if k not in own]
    mismatched = [k for k in converted if k in own and own[k].shape != converted[k].shape]
    by_design = allowed_missing_from_base(model)
    earlier = set(loaded)
    missing = [k for k in own if k not in converted and k not in earlier]
    bad_missing = [k for k in missing if not any(k.startswith(p) for p in by_design)
                   and not any(fnmatch.fnmatchcase(k, pat) for pat in allow_missing)]
    if mismatched:
        first = ", ".join(f"{k} file{_shape(converted[k])} vs model{_shape(own[k])}" for k in mismatched[:3])
        hint = "; wrong model size?" if any("image_encoder" in k for k in mismatched) else ""
        raise CheckpointError(f"{path}: {len(mismatched)} shape mismatches: {first}{hint}")
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} keys the model does not have, first: "
                              f"{', '.join(unexpected[:3])}; wrong model size or encoder?")
    if bad_missing:
        raise CheckpointError(f"{path}: {len(bad_missing)} model keys missing from the file, first: "
                              f"{', '.join(bad_missing[:3])}; add patterns to model.checkpoint_allow_missing "
                              f"if that is intended")
    check_values(converted, own, path)
    model.load_state_dict(converted, strict=False)
    return {"missing": missing, "loaded": sorted(earlier | set(converted))}


def load_recipe_weights(model: SegmentationModel, m: ModelSection, state: dict[str, Tensor] | None = None,
                        where: str | Path | None = None) -> None:
    """The recipe's ``model.base_checkpoint`` then ``model.checkpoint`` (or `state`, read from `where`,
    in its place); the top file is checked for keys that neither holds."""
    allow = list(m.checkpoint_allow_missing)
    top = m.checkpoint if state is None else where
    loaded: list[str] = []
    if m.base_checkpoint:
        base_allow = ["*"] if top else allow
        loaded = load_weights(model, m.base_checkpoint, allow_missing=base_allow)["loaded"]
    if state is not None and where is not None:
        load_state(model, state, where, allow, loaded)
    elif top:
        load_weights(model, top, allow_missing=allow, loaded=loaded)
