"""The JSON files samfx writes (metrics.json, versions.json, eval and predict reports, bench reports):
values made JSON-safe and files replaced atomically."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def jsonable(obj: Any) -> Any:
    """inf / NaN -> None (JSON null), recursively through dicts, lists and tuples (JSON has no infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON (numpy / torch scalars and arrays as numbers and lists), atomically."""
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_text(path: Path, text: str) -> None:
    """Replace `path` atomically (samfx.checkpoint.atomic_write)."""
    from samfx.checkpoint import atomic_write

    atomic_write(path, lambda fh: fh.write(text.encode()))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
