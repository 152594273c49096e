"""Load, merge, override and validate recipes.

``load_recipe(path, overrides)`` returns a :class:`Recipe`: the resolved, fully-defaulted config as
a plain dict, plus where each value came from so errors can name the file (or "command line").
Components are named by registry name only; nothing here imports or calls code from a recipe.
The resolved config names each component by its qualified name (``plugin/name``), so a stored
recipe (run folder, checkpoint) keeps its meaning when another plugin registers the same name.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from samfx.config.paths import at_pattern, get_path, put_path
from samfx.config.schema import CLIP_LABELS, COMPONENT_SLOTS, RANGES, SELECT_METRICS, RecipeSchema
from samfx.config.yaml_io import read_yaml
from samfx.contracts.errors import RecipeError, did_you_mean
from samfx.contracts.registry import Registry

CLI = "command line"
RESERVED = {"name", "site"}  # keys every component ref may carry besides its schema's


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


def _deep_merge(a: Any, b: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced by b.
    A component mapping whose ``name`` changes is replaced whole (its old options do not apply)."""
    if isinstance(a, dict) and isinstance(b, dict) and not (
            "name" in a and "name" in b and a["name"] != b["name"]):
        out = dict(a)
        for k, v in b.items():
            out[k] = _deep_merge(a[k], v) if k in a else copy.deepcopy(v)
        return out
    return copy.deepcopy(b)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"{CLI}: override '{item}' must look like key.path=value (e.g. train.seed=1)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def _set_path(cfg: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        nxt = node[int(part)] if isinstance(node, list) and part.isdigit() and int(part) < len(node) else (
            node.get(part) if isinstance(node, dict) else None)
        if nxt is None:
            if isinstance(node, list):
                raise RecipeError(f"{'.'.join(parts[:i + 1])}: index out of range ({len(node)} items) ({CLI})")
            nxt = node[part] = {}
        elif not isinstance(nxt, (dict, list)):
            nxt = node[part] = {} if not isinstance(node, list) else nxt
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise RecipeError(f"{key}: index out of range ({len(node)} items) ({CLI})")
        node[int(last)] = value
    elif isinstance(value, dict) and isinstance(node.get(last), dict):
        node[last] = _deep_merge(node[last], value)
    else:
        node[last] = value


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
        if comp.schema is None:
            extra = [k for k in data if k not in RESERVED]
            if extra:
                raise self.fail(f"{path}.{extra[0]}", f"unknown key; {kind} '{comp.qualname}' takes no options")
            out = {}
        else:
            out = self.typed(comp.schema, data, path, ignore)
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


def _check_values(cfg: dict[str, Any], v: _Validator) -> None:
    """Numeric ranges (schema.RANGES) and rules across keys, before any data or model work."""
    for pattern, rng in RANGES.items():
        for path, value in at_pattern(cfg, pattern):
            if value is not None and not rng.allows(value):
                note = f" ({rng.note})" if rng.note else ""
                raise v.fail(path, f"must be {rng.text()}{note}, got {value!r}")
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
    for _, layer in sources:
        merged = _deep_merge(merged, layer)
    for item in overrides:
        key, value = _parse_override(item)
        _set_path(merged, key, value)
    all_sources = [*sources, (CLI, _cli_tree(overrides))] if overrides else sources
    config = _validate(merged, all_sources, registry)
    return Recipe(config=config, path=str(path) if path else None, sources=all_sources)


def _cli_tree(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Overrides as a nested mapping (list indices as mapping keys) for source lookup."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, _ = _parse_override(item)
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = True
    return tree
