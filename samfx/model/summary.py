"""`samfx show`: resolved recipe + parameter counts (the JSON contract documented in docs/recipes.md), after
one forward of a dummy batch (samfx.model.forward_check)."""
from __future__ import annotations

from typing import Any

from samfx.config.recipe import load_recipe
from samfx.contracts.plugins import get_registry
from samfx.model.build import build_model, stage_losses
from samfx.model.forward_check import check_forward
from samfx.model.trainable import apply_stage, count_params


def summarize(recipe_path: str, overrides: list[str], check: bool = True) -> dict[str, Any]:
    import torch

    registry = get_registry()
    recipe = load_recipe(recipe_path, overrides, registry)
    model = build_model(recipe, registry, load_checkpoint=False)   # with every prompt, eval's too
    stage_losses(model, recipe, registry)   # each stage's loss, as training builds it
    if check:
        check_forward(model, list(recipe.typed.data.classes), torch.device("cpu"), "show")
    stages = []
    for i, stage in enumerate(recipe.typed.train.stages):
        apply_stage(model, recipe, i)
        stages.append({"name": stage.name, "epochs": stage.epochs, "max_steps": stage.max_steps,
                       "params": {"trainable": count_params(model)[1]}})
    apply_stage(model, recipe, len(recipe.typed.train.stages) - 1)
    total, trainable = count_params(model)
    by_component = {}
    for name, module in model.component_modules().items():
        t, tr = count_params(module)
        by_component[name] = {"total": t, "trainable": tr}
    schedules = {key: model.prompt_schedule(key) for key in model.prompt_generators}
    return {"recipe": recipe.config, "params": {"total": total, "trainable": trainable,
                                                "by_component": by_component}, "stages": stages,
            "sites": site_rows(model), "prompt_schedules": schedules}


def site_rows(model: Any) -> list[dict[str, Any]]:
    """The encoder's adapter sites (name, layout, in/out width, spatial grid) and the adapters on each."""
    rows = []
    for name, site in model.image_encoder.sites().items():
        suffix = "-" + name.replace(".", "-")
        on = [k[: -len(suffix)] for k in model.adapters if k.endswith(suffix)]
        rows.append({"name": name, "layout": site.layout, "in_dim": site.in_dim, "out_dim": site.out_dim,
                     "spatial": list(site.spatial) if site.spatial else None, "adapters": on})
    return rows
