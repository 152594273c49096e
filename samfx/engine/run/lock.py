"""One ``samfx train`` per run folder: an exclusive lock held for the whole of ``Trainer.fit``.

The lock is ``fcntl.flock`` on ``RUN/.lock``, which holds the holder's PID and host for the
message a second run gets. The kernel drops a flock when its process dies, so the lock file of a
killed run binds nobody: the next run takes it over. The file is removed on release; a folder no
run is using has no lock file. (A library such as ``filelock`` would still leave the PID to us,
and truncates the file when a contender opens it, wiping the holder's PID.)
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from samfx.contracts.errors import SamfxError

NAME = ".lock"
_HELD: set[int] = set()


def _close_in_child() -> None:
    # a forked child (DataLoader worker) shares the lock; it must not keep it alive after we exit
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunLocked(SamfxError):
    """Another process trains into the folder."""


class RunLock:
    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Lock `run_dir` (which must exist) or raise :class:`RunLocked` naming the holder."""
        path = Path(run_dir) / NAME
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise SamfxError(f"{run_dir}: cannot lock the run folder ({exc.strerror}); is it writable?") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunLocked(f"{run_dir}: another `samfx train` is using this run folder ({holder}); wait for "
                                f"it to finish or stop it, or choose another --out") from None
            except OSError as exc:
                os.close(fd)
                raise SamfxError(f"{run_dir}: cannot lock the run folder ({exc.strerror}); its file system does "
                                 f"not support flock: choose a run folder on another file system") from None
            try:  # the holder may have removed the file between our open and our flock
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        _HELD.add(fd)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked: a contender then retries on a fresh file
        _HELD.discard(self._fd)
        os.close(self._fd)
        self._fd = None


def _holder(fd: int) -> str:
    try:
        pid, _, host = os.pread(fd, 256, 0).decode().strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        pid, host = "", ""
    if not pid:
        return "PID not written yet"
    return f"PID {pid}" + (f" on host {host}" if host and host != socket.gethostname() else "")
