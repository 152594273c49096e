"""Where generated and imported stores are cached, and how a cached store is made exactly once."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from samfx.contracts.errors import DataError
from samfx.data.store import read_index

DEFAULT_CACHE = "~/.cache/samfx"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """`explicit` when given, else $SAMFX_CACHE, else ~/.cache/samfx (expanded, not created)."""
    chosen = explicit or os.environ.get("SAMFX_CACHE") or DEFAULT_CACHE
    return Path(chosen).expanduser()


def cached(path: Path, make: Callable[[Path], object]) -> Path:
    """Return `path` when it holds a valid store, else call ``make(path)`` (which writes atomically
    and refuses an existing file: a damaged cache file is deleted first)."""
    if _valid(path):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise DataError(f"{path.parent}: cannot create the cache folder or replace {path.name} in it ({exc}); "
                        f"set SAMFX_CACHE or data.source.cache_dir to a writable folder") from None
    try:
        make(path)
    except DataError:
        if _valid(path):  # another process (e.g. a DDP rank) made it meanwhile
            return path
        raise
    return path


def _valid(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        read_index(path)
    except DataError:
        return False
    return True
