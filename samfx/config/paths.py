"""Dotted key paths in a recipe's config: the one walk over component slots (``model.adapters.*``) and
numeric ranges, used by validation (samfx.config.recipe) and by the run folder (plugins a recipe uses)."""
from __future__ import annotations

from typing import Any


def at_pattern(node: Any, pattern: str) -> list[tuple[str, Any]]:
    """(dotted path, value) of every key of `node` matching `pattern` ("*": each list item), e.g.
    ``at_pattern(config, "model.adapters.*")``: the one walk over recipe slots and ranges."""
    return _at_pattern(node, pattern.split("."), "")


def _key(container: Any, part: str) -> Any:
    return int(part) if isinstance(container, list) and part.isdigit() else part


def get_path(node: Any, path: str, fallback: Any) -> Any:
    """The value at dotted `path` in `node` (the raw recipe), else the same path in `fallback`."""
    for src in (node, fallback):
        cur, found = src, True
        for part in path.split("."):
            key = _key(cur, part)
            in_list = isinstance(cur, list) and isinstance(key, int) and key < len(cur)
            if in_list or isinstance(cur, dict) and key in cur:
                cur = cur[key]
            else:
                found = False
                break
        if found:
            return cur
    return None


def put_path(node: Any, path: str, value: Any) -> None:
    """Set the existing key at dotted `path` in `node` to `value`."""
    *parents, last = path.split(".")
    for part in parents:
        node = node[_key(node, part)]
    node[_key(node, last)] = value


def _at_pattern(node: Any, parts: list[str], path: str) -> list[tuple[str, Any]]:
    """(dotted path, value) of every key matching `parts` ("*": each list item)."""
    if not parts:
        return [(path, node)]
    head, rest = parts[0], parts[1:]

    def join(k: Any) -> str:
        return f"{path}.{k}" if path else str(k)

    items: list[tuple[Any, Any]]
    if head == "*":
        items = list(enumerate(node)) if isinstance(node, list) else []
    else:
        items = [(head, node[head])] if isinstance(node, dict) and head in node else []
    return [hit for k, sub in items for hit in _at_pattern(sub, rest, join(k))]
