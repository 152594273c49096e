"""`samfx describe KIND/NAME`: a component's recipe keys (schema fields, types, defaults, the comment
after each field, its declared range) and the schema's docstring; torch-free (the factory is not imported)."""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from typing import Any

from samfx.contracts.bounds import field_ranges
from samfx.contracts.errors import RegistryError
from samfx.contracts.registry import KINDS, Component, Registry


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__name__
    return str(tp).replace("typing.", "")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _field_comments(schema: type) -> dict[str, str]:
    """``name: type = default  # comment`` lines of the schema's source: the field's help."""
    try:
        source = inspect.getsource(schema)
    except (OSError, TypeError):
        return {}
    found = (re.match(r"\s+(\w+)\s*:[^#]*#\s*(.*)$", line) for line in source.splitlines())
    return {m.group(1): m.group(2).strip() for m in found if m}


def describe(registry: Registry, spec: str) -> dict[str, Any]:
    """`spec` is ``kind/name`` or ``kind/plugin/name``; the component's plugin, fields and docs. A field
    declared with :func:`samfx.contracts.bounds.bounded` also has ``range`` (e.g. ``>= 1 (SAM2: 7)``)."""
    kind, _, name = spec.partition("/")
    if kind not in KINDS or not name:
        raise RegistryError(f"describe: '{spec}' is not KIND/NAME; kinds are: {', '.join(KINDS)} "
                            f"(e.g. `samfx describe prompt_generator/clicks`)")
    comp: Component = registry.get(kind, name, where="describe")
    fields = []
    if comp.schema is not None:
        hints = typing.get_type_hints(comp.schema)
        comments = _field_comments(comp.schema)
        ranges = field_ranges(comp.schema)
        for f in dataclasses.fields(comp.schema):
            fields.append({"name": f.name, "type": _type_name(hints.get(f.name, f.type)), "default": _default(f),
                           "help": comments.get(f.name, "")})
            if f.name in ranges:
                rng = ranges[f.name]
                fields[-1]["range"] = rng.text() + (f" ({rng.note})" if rng.note else "")
    doc = inspect.getdoc(comp.schema) if comp.schema is not None else None
    if doc and comp.schema is not None and doc.startswith(f"{comp.schema.__name__}("):
        doc = None  # the dataclass's generated signature, not a docstring
    return {"kind": comp.kind, "name": comp.name, "qualname": comp.qualname, "plugin": comp.plugin,
            "description": comp.description, "doc": doc or "", "fields": fields}
