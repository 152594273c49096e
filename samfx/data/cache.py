"""Where generated and imported stores are cached, and how a cached store is made exactly once."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from samfx.data.store import read_index
from samfx.errors import DataError

DEFAULT_CACHE = "~/.cache/samfx"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """`explicit` when given, else $SAMFX_CACHE, else ~/.cache/samfx (expanded, not created)."""
    chosen = explicit or os.environ.get("SAMFX_CACHE") or DEFAULT_CACHE
    return Path(chosen).expanduser()


def cached(path: Path, make: Callable[[Path], object]) -> Path:
    """Return `path` when it holds a valid store, else call ``make(path)`` (which writes atomically)."""
    if path.is_file():
        try:
            read_index(path)
            return path
        except DataError:
            pass  # damaged cache file: rebuild it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{path.parent}: cannot create the cache folder ({exc}); set SAMFX_CACHE or "
                        f"data.source.cache_dir to a writable folder") from None
    make(path)
    return path
