"""Load, merge, override and validate recipes.

``load_recipe(path, overrides)`` returns a :class:`Recipe`: the resolved, fully-defaulted config as
a plain dict, plus where each value came from so errors can name the file (or "command line").
Components are named by registry name only; nothing here imports or calls code from a recipe.
The resolved config names each component by its qualified name (``plugin/name``), so a stored
recipe (run folder, checkpoint) keeps its meaning when another plugin registers the same name.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from samfx.config.overrides import CLI, deep_merge, override_tree, parse_override, set_path
from samfx.config.paths import at_pattern, get_path, put_path
from samfx.config.schedule import check_schedule
from samfx.config.schema import CLIP_LABELS, COMPONENT_SLOTS, RANGES, SELECT_METRICS, RecipeSchema
from samfx.config.yaml_io import read_yaml
from samfx.contracts.bounds import Range, field_ranges
from samfx.contracts.errors import RecipeError, RegistryError, did_you_mean
from samfx.contracts.registry import Registry

RESERVED = {"name", "site", "schedule"}  # keys a component ref may carry besides its schema's
RESERVED_FOR = {"site": "adapter", "schedule": "prompt_generator"}  # ... and the kind that takes each


@dataclass
class Recipe:
    """A resolved recipe. ``config`` is plain data (dicts/lists/scalars), safe to dump as YAML."""

    config: dict[str, Any]
    path: str | None = None
    sources: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return default
        return node

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.config, sort_keys=False)

    @cached_property
    def typed(self) -> RecipeSchema:
        """The config as its typed schema: the core sections are dataclasses with the declared types
        (``recipe.typed.train.stages[0].optimizer.lr`` is a float); component configs stay mappings,
        typed by their plugins' schemas when built. Read this, not string keys; ``config`` is for dumping.
        Computed once: a recipe is not changed after loading."""
        node = OmegaConf.merge(OmegaConf.structured(RecipeSchema), self.config)
        return cast(RecipeSchema, OmegaConf.to_object(node))


def _layers(path: Path, chain: tuple[Path, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The recipe and its bases, base first: [(file, raw mapping)]."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise RecipeError(f"{path}: 'base:' inheritance loops ({cycle}); remove one of the bases")
    data = read_yaml(path, str(chain[-1]) if chain else "recipe")
    bases = data.pop("base", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError(f"{path}: base: must be a file name or a list of file names")
    out: list[tuple[str, dict[str, Any]]] = []
    for base in bases:
        out += _layers((path.parent / base), (*chain, path))
    out.append((_display(path), data))
    return out


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _canonical_names(node: Any, at: str, registry: Registry | None) -> Any:
    """`node` (the value at dotted key `at`; "" for a whole recipe) with each component ``name`` in it
    made qualified (``apg`` -> ``apg/apg``), so layers naming one component differently merge its
    options. Names the registry cannot resolve stay as written, for validation to report."""
    if registry is None:
        return node
    keys = at.split(".") if at else []
    for pattern, kind in COMPONENT_SLOTS.items():
        parts = pattern.split(".")
        if len(keys) > len(parts) or any(p != k and not (p == "*" and k.isdigit()) for k, p in zip(keys, parts)):
            continue
        rest = ".".join(parts[len(keys):])
        if not rest:
            return _qualified(kind, node, registry)
        for path, value in at_pattern(node, rest):
            put_path(node, path, _qualified(kind, value, registry))
    return node


def _qualified(kind: str, ref: Any, registry: Registry) -> Any:
    name = ref.get("name") if isinstance(ref, dict) else ref
    if not isinstance(name, str):
        return ref
    try:
        qual = registry.get(kind, name).qualname
    except RegistryError:
        return ref
    return {**ref, "name": qual} if isinstance(ref, dict) else qual


class _Validator:
    def __init__(self, sources: list[tuple[str, dict[str, Any]]], registry: Registry | None):
        self.sources = sources
        self.registry = registry

    def source_of(self, path: str) -> str:
        """The last layer (file or command line) that set `path`, or replaced a value above it whole."""
        parts = path.split(".")
        for name, layer in reversed(self.sources):
            node: Any = layer
            for part in parts:
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, dict):
                    break  # merged key by key: an earlier layer set the rest
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    return str(name)  # a list or scalar (or the command line's marker) replaced it here
            else:
                return str(name)
        return self.sources[-1][0] if self.sources else CLI

    def fail(self, path: str, msg: str) -> RecipeError:
        return RecipeError(f"{path}: {msg} (in {self.source_of(path)})")

    def in_range(self, path: str, value: Any, rng: Range) -> None:
        failure = rng.failure(value)
        if failure is not None:
            raise self.fail(path, failure)

    def typed(self, schema: type, data: Any, path: str, ignore: Collection[str] = frozenset()) -> dict[str, Any]:
        """Validate `data` against dataclass `schema`; return a plain dict with defaults filled."""
        where = path or "recipe"
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a mapping of {schema.__name__} keys, got {type(data).__name__} {data!r}")
        self._unknown_keys(schema, data, path, ignore)
        clean = {k: v for k, v in data.items() if k not in ignore}
        try:
            given = OmegaConf.create(clean)
            self._no_interpolation(given, path)
            node = OmegaConf.merge(OmegaConf.structured(schema), given)
            return OmegaConf.to_container(node)  # type: ignore[return-value]
        except OmegaConfBaseException as exc:
            self._check_list_items(schema, clean, path)  # omegaconf loses the path inside lists
            key = (path + "." if path else "") + str(exc.full_key or exc.key or "")
            key = re.sub(r"\[(\d+)\]", r".\1", key).rstrip(".")
            first = str(getattr(exc, "msg", exc)).splitlines()[0]
            value = Recipe(config=clean).get(key[len(path) + 1:] if path else key)
            raise self.fail(key, _type_message(first, value)) from None

    def _check_list_items(self, schema: type, data: dict[str, Any], path: str) -> None:
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            dt, lt = _dataclass_type(schema, key), _list_dataclass_type(schema, key)
            if dt is not None and isinstance(value, dict):
                self._check_list_items(dt, value, sub)
            elif lt is not None and isinstance(value, list):
                for i, item in enumerate(value):
                    self.typed(lt, item, f"{sub}.{i}")

    def _no_interpolation(self, node: Any, path: str) -> None:
        """Refuse ``${...}``: its resolved value (an environment variable, say) would be frozen into
        recipe.yaml and every checkpoint, unseen in the recipe file (docs/recipes.md)."""
        keys = range(len(node)) if OmegaConf.is_list(node) else list(node.keys())
        for key in keys:
            sub = f"{path}.{key}" if path else str(key)
            if OmegaConf.is_interpolation(node, key):
                raw = OmegaConf.to_container(node, resolve=False)[key]  # type: ignore[index]
                raise self.fail(sub, f"{raw!r}: ${{...}} interpolation is not supported in recipes; write the "
                                     f"value, or pass it on the command line ({sub}=...)")
            child = node[key]  # not resolved: its own interpolations are checked below
            if OmegaConf.is_config(child):
                self._no_interpolation(child, sub)

    def _unknown_keys(self, schema: type, data: dict[str, Any], path: str, ignore: Collection[str]) -> None:
        fields = {f.name: f for f in dataclasses.fields(schema)}
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in ignore:
                continue
            if key not in fields:
                raise self.fail(sub, "unknown key" + (did_you_mean(str(key), fields) or
                                                      f"; known keys: {', '.join(fields)}"))
            ftype = _dataclass_type(schema, key)
            if ftype is not None and isinstance(value, dict):
                self._unknown_keys(ftype, value, sub, set())
            elif ftype is not None and value is not None and not isinstance(value, dict):
                raise self.fail(sub, f"expected a mapping of {ftype.__name__} keys, got {value!r}")
            lt = _list_dataclass_type(schema, key)
            if lt is not None and isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        self._unknown_keys(lt, item, f"{sub}.{i}", set())

    def component(self, kind: str, data: Any, path: str) -> Any:
        if data is None:
            return None
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise self.fail(path, f"expected a {kind} as {{name: ..., <options>}}, got {data!r}")
        if self.registry is None:
            return dict(data)
        comp = self.registry.get(kind, data["name"], where=f"{path}.name ({self.source_of(path + '.name')})")
        ignore = {k for k in RESERVED if k in data}
        for key in ignore - {"name"}:
            if RESERVED_FOR[key] != kind:
                raise self.fail(f"{path}.{key}", f"unknown key; only a {RESERVED_FOR[key]} takes '{key}'")
        if "schedule" in ignore:
            data = {**data, "schedule": check_schedule(data["schedule"], f"{path}.schedule "
                                                                           f"({self.source_of(path + '.schedule')})")}
        if comp.schema is None:
            extra = [k for k in data if k not in RESERVED]
            if extra:
                raise self.fail(f"{path}.{extra[0]}", f"unknown key; {kind} '{comp.qualname}' takes no options")
            out = {}
        else:
            out = self.typed(comp.schema, data, path, ignore)
            for key, rng in field_ranges(comp.schema).items():  # declared with contracts.bounds.bounded
                self.in_range(f"{path}.{key}", out.get(key), rng)
        head = {"name": comp.qualname}  # stored recipes keep meaning this component (docs/recipes.md)
        head.update({k: data[k] for k in ignore if k != "name"})
        return {**head, **out}


def _dataclass_type(schema: type, key: str) -> type | None:
    import typing
    hints = typing.get_type_hints(schema)
    t = hints.get(key)
    return t if isinstance(t, type) and dataclasses.is_dataclass(t) else None


def _list_dataclass_type(schema: type, key: str) -> type | None:
    import typing
    t = typing.get_type_hints(schema).get(key)
    if typing.get_origin(t) is list:
        (arg,) = typing.get_args(t) or (None,)
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    return None


def _type_message(first: str, value: Any) -> str:
    # omegaconf: "Value 'abc' of type 'str' could not be converted to Integer"
    if "could not be converted to" in first:
        target = first.rsplit(" ", 1)[-1].lower()
        value = first.split("'")[1] if "'" in first else "?"
        return f"expected {target}, got {value!r}"
    # omegaconf: "Invalid value assigned: AnyNode is not a ListConfig, TupleConfig, list, or tuple."
    if "is not a ListConfig" in first:
        return f"expected a list such as [1, 2], got {value!r}"
    if "is not a subclass" in first or "Invalid type" in first:
        return f"wrong type: {first}"
    return first


def _validate(raw: dict[str, Any], sources: list[tuple[str, dict[str, Any]]],
              registry: Registry | None) -> dict[str, Any]:
    v = _Validator(sources, registry)
    # 1) core sections, with component slots left as raw data
    cfg = v.typed(RecipeSchema, raw, "")
    # 2) component slots, through each plugin's schema
    for slot, kind in COMPONENT_SLOTS.items():
        for path, _ in at_pattern(cfg, slot):
            put_path(cfg, path, v.component(kind, get_path(raw, path, cfg), path))
    _check_values(cfg, v)
    return cfg


CHECKPOINT_FORMATS = ("pt", "safetensors")
# Sizes that allocate in proportion to their square (or more) when the model is built: refused with
# one line before any allocation. Numbers only: a non-number is left to the component's schema.
SIZE_RANGES: dict[str, Range] = {
    "model.image_encoder.image_size": Range(ge=1, le=4096, note="SAM uses 1024, SAMUS 256"),
}


def _check_values(cfg: dict[str, Any], v: _Validator) -> None:
    """Numeric ranges of core keys (schema.RANGES) and rules across keys, before any data or model work."""
    for pattern, rng in RANGES.items():
        for path, value in at_pattern(cfg, pattern):
            v.in_range(path, value, rng)
    for pattern, rng in SIZE_RANGES.items():
        for path, value in at_pattern(cfg, pattern):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                v.in_range(path, value, rng)
    if cfg["train"]["checkpoint_format"] not in CHECKPOINT_FORMATS:
        raise v.fail("train.checkpoint_format", f"unknown '{cfg['train']['checkpoint_format']}'; use "
                                                f"{' or '.join(CHECKPOINT_FORMATS)}")
    stages = cfg["train"]["stages"]
    if not stages:
        raise v.fail("train.stages", "no stages; a recipe trains at least one, e.g. [{name: train, epochs: 1}]")
    clips = cfg["data"]["clip_length"] > 0
    if cfg["data"]["clip_labels"] not in CLIP_LABELS:
        raise v.fail("data.clip_labels", f"unknown '{cfg['data']['clip_labels']}'; use {' or '.join(CLIP_LABELS)}")
    for i, st in enumerate(stages):
        where = f"train.stages.{i}"
        if st["epochs"] == 0 and st["max_steps"] is None:
            raise v.fail(f"{where}.epochs", "0 trains no step; use epochs >= 1, or set max_steps to train a "
                                            "number of steps instead")
        metric = st["select_metric"]
        if metric not in SELECT_METRICS:
            raise v.fail(f"{where}.select_metric", f"unknown '{metric}'; use {', '.join(SELECT_METRICS)}")
        if clips and metric == "val/loss":
            raise v.fail(f"{where}.select_metric", "val/loss is not computed for clip training (validation runs "
                                                   "whole sequences); use val/dice or train/loss")
        if st["area_change_weight"] and not clips:
            raise v.fail(f"{where}.area_change_weight", "only applies to clip training; set data.clip_length > 0 "
                                                        "or remove it")


def load_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (),
                registry: Registry | None = None) -> Recipe:
    """Read `path` (and its bases), apply ``key=value`` overrides, validate, fill defaults.

    With `registry` None, component options are not checked (used by light commands).
    """
    sources = _layers(Path(path)) if path is not None else []
    # start from the defaults so overrides can address default list items (train.stages.0.epochs=3)
    # to_container's declared result covers lists and scalars; a structured dataclass gives a dict
    merged: dict[str, Any] = OmegaConf.to_container(OmegaConf.structured(RecipeSchema))  # type: ignore[assignment]
    merged = _canonical_names(merged, "", registry)
    for _, layer in sources:
        merged = deep_merge(merged, _canonical_names(layer, "", registry))
    for item in overrides:
        key, value = parse_override(item)
        set_path(merged, key, _canonical_names(value, key, registry))
    all_sources = [*sources, (CLI, override_tree(overrides))] if overrides else sources
    config = _validate(merged, all_sources, registry)
    return Recipe(config=config, path=str(path) if path else None, sources=all_sources)
