"""Where a store may be written: the overwrite policy and the clean-up of stale partial files.

A store is written to ``<out>.partial-<pid>`` and renamed when complete (samfx.data.store). A
writer killed with SIGKILL leaves its partial file behind; the next writer of the same ``<out>``
deletes those whose pid is no longer a live process (a live writer's partial file is kept).
"""
from __future__ import annotations

import os
from pathlib import Path

from samfx.contracts.errors import DataError, first_line

PARTIAL = ".partial-"
FORMAT = "samfx-store"  # the root attribute samfx_format of every samfx store
FORMAT_VERSION = 1


def reason(exc: OSError) -> str:
    """The OS's short reason for `exc` ('No such file or directory'), else its first line. A bare
    ``OSError(errno.ENOSPC)`` carries its code only in ``args``: that code counts too."""
    code = exc.errno if exc.errno is not None else next((a for a in exc.args if isinstance(a, int)), None)
    if code:
        return os.strerror(code)
    return first_line(exc) or type(exc).__name__


def is_store(path: Path) -> bool:
    """Whether `path` is an HDF5 file whose root says it is a samfx store."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("samfx_format", "")
    except (OSError, KeyError, RuntimeError, TypeError, ValueError):
        return False
    return (value.decode() if isinstance(value, bytes) else str(value)) == FORMAT


def check_out(path: Path, force: bool) -> None:
    """A DataError unless a store may be written at `path`: a new file, or with `force` an
    existing samfx store (any other file, e.g. a checkpoint, is never replaced)."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder; --out names the store file to write, e.g. {path / 'store.h5'}")
    if not (path.exists() or path.is_symlink()):
        return
    if not force:
        raise DataError(f"{path}: already exists; pass --force to replace it (only a samfx store is replaced)")
    if not is_store(path):
        raise DataError(f"{path}: exists and is not a samfx store; refusing to replace it even with --force, "
                        f"choose another --out or move the file away yourself")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process (or no possible pid)
        return False
    except PermissionError:  # exists, owned by another user
        pass
    return True


def clean_stale_partials(path: Path) -> list[Path]:
    """Delete ``<path>.partial-<pid>`` files whose writer is dead; return what was deleted."""
    removed: list[Path] = []
    prefix = f"{path.name}{PARTIAL}"
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:  # no folder yet, or not a folder
        return removed
    for partial in candidates:
        pid = partial.name[len(prefix):]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            continue  # not ours to delete (permissions): leave it
        removed.append(partial)
    return removed
