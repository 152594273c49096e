"""Read one recipe file safely: UTF-8 YAML, no repeated keys, a mapping of recipe sections.

Errors name the file (and line) and never echo the file's content: ``base:`` may point anywhere.
A file is refused, before any value is built from it, when it nests deeper than :data:`MAX_DEPTH`
or when its aliases would expand it beyond :data:`MAX_NODES` values ("billion laughs").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from samfx.contracts.errors import RecipeError, did_you_mean

SECTIONS = ("model", "data", "train", "eval", "description", "base")
MAX_DEPTH = 32          # nested mappings / lists; recipes use fewer than 10
MAX_NODES = 100_000     # values once aliases are expanded; recipes hold a few hundred


class _TooBig(Exception):
    def __init__(self, what: str, line: int):
        super().__init__(what)
        self.what, self.line = what, line


def _expanded_size(node: yaml.Node, depth: int = 1, memo: dict[int, int] | None = None) -> int:
    """Values in `node` with every alias expanded (counted without expanding: each node once)."""
    memo = {} if memo is None else memo
    if depth > MAX_DEPTH:
        raise _TooBig(f"nested deeper than {MAX_DEPTH} levels", node.start_mark.line + 1)
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once here; it fails later in the constructor
    total = 1
    if isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, depth + 1, memo) + _expanded_size(v, depth + 1, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(v, depth + 1, memo) for v in node.value)
    if total > MAX_NODES:
        raise _TooBig(f"expands to more than {MAX_NODES} values through its aliases (&name / *name)",
                      node.start_mark.line + 1)
    memo[id(node)] = total
    return total


def _load(text: str) -> Any:
    """Compose `text`, check its size and depth, then build its values."""
    loader = _StrictLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise _TooBig(f"nested deeper than {MAX_DEPTH} levels", 1) from None
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse a key given twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # `<<:` merges may override on purpose; complex keys fail in the base class
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, where: str) -> dict[str, Any]:
    """The mapping in recipe file `path`; `where` names who asked for it (e.g. the including file)."""
    if not path.is_file():
        raise RecipeError(f"{where}: recipe file '{path}' not found; list the recipes with `ls recipes/`")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{where}: cannot read recipe file '{path}' ({exc.strerror or type(exc).__name__}); "
                          f"check its permissions") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          f"a recipe is YAML text: save it as UTF-8") from None
    try:
        data = _load(text)
    except _TooBig as exc:
        raise RecipeError(f"{path}:{exc.line}: recipe {exc.what}; a recipe is a few nested sections, "
                          f"write it out plainly") from None
    except _DuplicateKey as exc:
        raise RecipeError(f"{path}:{exc.line}: key '{exc.key}' given twice (first at line {exc.first}); "
                          f"keep one of them") from None
    except yaml.reader.ReaderError as exc:  # valid UTF-8 holding control characters: binary data
        raise RecipeError(f"{path}: not a text file (character 0x{exc.character:02x} at offset {exc.position}); "
                          f"a recipe is YAML text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RecipeError(f"{loc}: invalid YAML: {problem}; check indentation and quoting") from None
    if data is None or data == {}:
        raise RecipeError(f"{path}: empty recipe (no model, data, train or eval section); start from a recipe in "
                          f"recipes/ or name one with `base:`")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections (model, data, train, eval), "
                          f"got {type(data).__name__}")
    # A file none of whose keys is (close to) a section is not a recipe; its keys are not echoed,
    # since they may be another file's content (`base: /etc/shadow`).
    if not any(isinstance(k, str) and (k in SECTIONS or did_you_mean(k, SECTIONS)) for k in data):
        fix = "give a recipe YAML file (see recipes/)" if where == "recipe" else \
            f"'base:' in {where} should name a recipe YAML file"
        raise RecipeError(f"{path}: not a samfx recipe (no top-level {', '.join(SECTIONS[:4])} section); {fix}")
    return data
