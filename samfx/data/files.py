"""Files replaced atomically (checkpoints, JSON reports, text), and the JSON files samfx writes
(metrics.json, versions.json, eval and predict reports, bench reports) with values made JSON-safe."""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Replace `path` atomically (a killed writer leaves the old file, never half a new one): write
    through `write(file)` to a temp file in the same folder, fsync, rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """Replace `path` atomically with `text` (UTF-8)."""
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
