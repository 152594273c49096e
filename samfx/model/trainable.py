"""Which parameters train in a stage.

A stage's ``trainable`` entries are, in order of precedence:
- a component: ``image_encoder``, ``prompt_encoder``, ``mask_decoder``, ``prompt`` (all prompt
  generators), ``prompt:<key>``, ``adapters``, ``adapter:<key>``, ``temporal``;
- a component's own default set: ``image_encoder:default`` (the method's paper freezing);
- a glob over full parameter names: ``image_encoder.blocks.*.attn.qkv.*``.
Everything not selected is frozen.
"""
from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from torch import nn

from samfx.contracts.errors import RecipeError
from samfx.model.build import prompt_key
from samfx.model.roles import group_names, prefix_of

if TYPE_CHECKING:
    from samfx.config.recipe import Recipe
    from samfx.model.segmentation import SegmentationModel


def count_params(module: nn.Module) -> tuple[int, int]:
    total = trainable = 0
    seen: set[int] = set()
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def _adapter_keys(model: SegmentationModel, name: str) -> list[str]:
    """Keys (``<name>-<site>``) of the adapters that recipe component `name` (short or qualified) built."""
    short = name.split("/")[-1]
    sites = {s.replace(".", "-") for s in model.image_encoder.sites()}
    return [k for k in model.adapters if k.startswith(f"{short}-") and k[len(short) + 1:] in sites]


def select(model: SegmentationModel, entries: list[str], where: str = "trainable") -> set[str]:
    names = [n for n, _ in model.named_parameters()]
    comps = model.component_modules()
    chosen: set[str] = set()
    for entry in entries:
        hit: set[str] = set()
        if entry.endswith(":default") and entry[: -len(":default")] in comps:
            comp = entry[: -len(":default")]
            # duck-typed: any component may define default_trainable() (image encoders do)
            hit = {f"{comp}.{n}" for n in comps[comp].default_trainable()}  # type: ignore[operator]
        elif entry.startswith("adapter:") and entry not in comps and _adapter_keys(model, entry[8:]):
            keys = _adapter_keys(model, entry[8:])  # a component name: every site it is attached to
            hit = {n for n in names if any(n.startswith(f"adapters.{k}.") for k in keys)}
        elif (prefix := prefix_of(model, entry)) is not None:
            hit = {n for n in names if n.startswith(prefix)}
        else:
            hit = {n for n in names if fnmatch.fnmatchcase(n, entry)}
            if not hit and not any(ch in entry for ch in "*?["):
                known = ", ".join(sorted(comps) + group_names())
                raise RecipeError(f"{where}: '{entry}' names no component or parameter; components: {known}; "
                                  f"or use a glob such as 'image_encoder.blocks.*'")
        chosen |= hit
    return chosen


def set_trainable(model: SegmentationModel, entries: list[str], where: str = "trainable") -> set[str]:
    chosen = select(model, entries, where)
    for name, p in model.named_parameters():
        p.requires_grad_(name in chosen)
    return chosen


def apply_stage(model: SegmentationModel, recipe: Recipe, index: int) -> set[str]:
    """Freeze/unfreeze for stage `index` and switch the model to that stage's prompt generator."""

    stage = recipe.typed.train.stages[index]
    model.use_prompt(prompt_key(recipe, stage.prompt))
    return set_trainable(model, stage.trainable, f"train.stages.{index}.trainable")
