"""Build a :class:`SegmentationModel` from a resolved recipe, through the registry only."""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from samfx.checkpoints.files import lazy_shapes
from samfx.config.recipe import RESERVED, Recipe
from samfx.contracts.attribution import building, remember
from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import BuildContext
from samfx.contracts.plugins import get_registry
from samfx.contracts.registry import Component, Registry
from samfx.model.segmentation import SegmentationModel
from samfx.model.weights import load_recipe_weights

if TYPE_CHECKING:
    from samfx.model.segmentation import SegmentationModel


def make_config(comp: Component, cfg: dict[str, Any]) -> Any:
    """The component's schema instance from its (validated) recipe mapping."""
    if comp.schema is None:
        return None
    values = {k: v for k, v in cfg.items() if k not in RESERVED}
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(comp.schema), values))


def build_component(registry: Registry, kind: str, cfg: dict[str, Any], ctx: BuildContext,
                    where: str, *args: Any) -> Any:

    comp = registry.get(kind, cfg["name"], where=where)
    factory = comp.load_factory()
    config = make_config(comp, cfg)
    with building(comp, where):
        obj = factory(config, ctx, *args)
    remember(obj, comp)
    return obj


def build_extra(model: SegmentationModel | None, kind: str, cfg: dict[str, Any], where: str,
                registry: Registry | None = None) -> Any:
    """A component that is not part of the model (loss, evaluation prompt, dataset) built against the
    model's geometry (``model.context``; a default context when there is no model, e.g. datasets)."""

    ctx = model.context if model is not None else BuildContext()
    return build_component(registry or get_registry(), kind, cfg, ctx, where)


def stage_losses(model: SegmentationModel, recipe: Recipe, registry: Registry | None = None) -> list[Any]:
    """Every stage's loss built against `model`: what training builds stage by stage, built at once so that a
    bad loss option fails before a run folder is written (and in ``samfx show``)."""
    return [build_extra(model, "loss", st.loss, f"train.stages.{i}.loss", registry)
            for i, st in enumerate(recipe.typed.train.stages)]


def prompt_configs(recipe: Recipe) -> tuple[dict[str, dict[str, Any]], str]:
    """Every prompt generator the recipe uses (model, stages, eval) keyed by a stable name,
    and the key of ``model.prompt``."""
    found: dict[str, dict[str, Any]] = {}

    def key_for(cfg: dict[str, Any]) -> str:
        base: str = cfg["name"].split("/")[-1]
        key, i = base, 1
        while key in found and found[key] != cfg:
            i += 1
            key = f"{base}{i}"
        found[key] = cfg
        return key

    cfg = recipe.typed
    main = key_for(cfg.model.prompt)
    for stage in cfg.train.stages:
        if stage.prompt:
            key_for(stage.prompt)
    if cfg.eval.prompt:
        key_for(cfg.eval.prompt)
    return found, main


def prompt_key(recipe: Recipe, cfg: dict[str, Any] | None) -> str:
    """The model's prompt-generator key for `cfg` (None -> model.prompt)."""
    found, main = prompt_configs(recipe)
    if cfg is None:
        return main
    return next(k for k, v in found.items() if v == cfg)


def build_model(recipe: Recipe, registry: Registry | None = None, load_checkpoint: bool = True,
                weight_shapes: Callable[[], dict[str, tuple[int, ...]]] | None = None) -> SegmentationModel:
    """Encoder first (it fixes the geometry), then prompt encoder, decoder, prompts, adapters, temporal.

    ``weight_shapes`` gives the key -> shape table of the weights the model will receive (default: those
    of ``model.checkpoint`` when it is loaded), read only if a component sizes itself from them
    (``BuildContext.weight_shapes``, e.g. ``lora`` with ``rank: null``)."""

    registry = registry or get_registry()
    m = recipe.typed.model
    if weight_shapes is None and load_checkpoint and m.checkpoint:
        weight_shapes = lazy_shapes(m.checkpoint)
    ctx = BuildContext(num_classes=len(recipe.typed.data.classes), load_weights=load_checkpoint,
                       weight_shapes=weight_shapes)
    encoder = build_component(registry, "image_encoder", m.image_encoder, ctx, "model.image_encoder")
    ctx.take_geometry(encoder)
    prompt_encoder = build_component(registry, "prompt_encoder", m.prompt_encoder, ctx, "model.prompt_encoder")
    mask_decoder = build_component(registry, "mask_decoder", m.mask_decoder, ctx, "model.mask_decoder")
    found, main = prompt_configs(recipe)
    prompts = {key: build_component(registry, "prompt_generator", cfg, ctx, f"prompt '{key}'")
               for key, cfg in found.items()}

    adapters = {}
    sites = encoder.sites()
    for i, acfg in enumerate(m.adapters):
        pattern = acfg.get("site")
        where = f"model.adapters.{i}"
        if not pattern:
            raise RecipeError(f"{where}.site: missing; this encoder's sites are: {', '.join(sites) or 'none'}")
        matched = [s for s in sites if fnmatch.fnmatchcase(s, pattern)]
        if not matched:
            raise RecipeError(f"{where}.site: '{pattern}' matches no site of this encoder; "
                              f"sites are: {', '.join(sites) or 'none'}")
        for site_name in matched:
            site = sites[site_name]
            adapter = build_component(registry, "adapter", acfg, ctx, where, site)
            key = f"{acfg['name'].split('/')[-1]}-{site_name.replace('.', '-')}"
            adapters[key] = (adapter, site.module)

    temporal = None
    if m.temporal:
        temporal = build_component(registry, "temporal_module", m.temporal, ctx, "model.temporal")
    model = SegmentationModel(encoder, prompt_encoder, mask_decoder, prompts, main, adapters, temporal, ctx)
    model.schedules = {key: cfg["schedule"] for key, cfg in found.items() if "schedule" in cfg}
    if load_checkpoint:
        load_recipe_weights(model, m)
    return model
