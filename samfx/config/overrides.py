"""Merging recipe layers and applying ``key=value`` overrides from the command line."""
from __future__ import annotations

import copy
from typing import Any

import yaml

from samfx.contracts.errors import RecipeError

CLI = "command line"  # the source name of overrides in error messages


def deep_merge(a: Any, b: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced by b.
    A component mapping whose ``name`` changes is replaced whole (its old options do not apply); names
    are compared as written, so callers make them canonical first (samfx.config.recipe)."""
    if isinstance(a, dict) and isinstance(b, dict) and not (
            "name" in a and "name" in b and a["name"] != b["name"]):
        out = dict(a)
        for k, v in b.items():
            out[k] = deep_merge(a[k], v) if k in a else copy.deepcopy(v)
        return out
    return copy.deepcopy(b)


def parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"{CLI}: override '{item}' must look like key.path=value (e.g. train.seed=1)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def set_path(cfg: dict[str, Any], key: str, value: Any) -> None:
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
        node[last] = deep_merge(node[last], value)
    else:
        node[last] = value


def override_tree(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Overrides as a nested mapping (list indices as mapping keys) for source lookup."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, _ = parse_override(item)
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = True
    return tree
