"""Files replaced atomically (checkpoints, JSON reports, text), and the JSON files samfx writes
(metrics.json, versions.json, eval and predict reports, bench reports) with values made JSON-safe.

A write that runs out of space (ENOSPC, EDQUOT) raises :class:`DiskFull`, one line naming the file, the
bytes it needed and the bytes free; the temp file is deleted and the previous file is left as it was."""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from samfx.contracts.errors import SamfxError

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(SamfxError):
    """A file could not be written for lack of space; the previous version of the file is kept."""


def size_text(n: float) -> str:
    """Bytes for a message: ``512 B``, ``3.2 MB``, ``1.5 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def disk_full(path: Path, needed: int, exc: OSError) -> DiskFull:
    """The one-line error for a write of `needed` bytes to `path` that failed with ENOSPC / EDQUOT."""
    try:
        free = f"{size_text(shutil.disk_usage(path.parent).free)} free"
    except OSError:
        free = "free space unknown"
    what = "quota exceeded" if exc.errno == errno.EDQUOT else "no space left on device"
    kept = f"the previous {path.name} is kept" if path.exists() else "nothing was left at that path"
    return DiskFull(f"{path}: cannot write it, {what} (it needs at least {size_text(needed)}, {free}); {kept}: "
                    f"free some space or write to another folder")


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], need: int = 0) -> None:
    """Replace `path` atomically (a killed writer leaves the old file, never half a new one): write
    through `write(file)` to a temp file in the same folder, fsync, rename over `path`.

    Out of space: :class:`DiskFull` naming `path` and the bytes needed (`need`, an estimate, or what
    was written when it failed, whichever is larger); the temp file is removed, `path` is unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
    written = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                written = os.fstat(fh.fileno()).st_size
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = out_of_space(exc)
        if full is not None:
            raise disk_full(path, max(need, written), full) from None
        raise


def out_of_space(exc: BaseException | None) -> OSError | None:
    """The ENOSPC / EDQUOT OSError behind `exc` (writers such as ``torch.save`` wrap it, HDF5 states it only
    in its message), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and (exc.errno in FULL or "No space left on device" in str(exc)
                                         or "errno = 28," in str(exc)):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


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
