"""What ``samfx annotate`` may touch: files inside the allowed folders only (no ``..``, no symlink out),
bounded uploads, and the errors its server turns into HTTP answers."""
from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from samfx.contracts.errors import SamfxError


class AnnotateError(SamfxError):
    """A user error in an annotation session (a bad operation, a frame out of range...): HTTP 400."""


class AccessDenied(AnnotateError):
    """A path outside the allowed folders, or a missing / wrong token: HTTP 403."""


class TooLarge(AnnotateError):
    """An upload over the size limit: HTTP 413."""


def new_token() -> str:
    """A random per-start token (as Jupyter's), 32 URL-safe characters."""
    return secrets.token_urlsafe(24)


def same_token(given: str | None, token: str) -> bool:
    """Whether `given` is `token` (constant-time comparison)."""
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


class Roots:
    """The allowed folders. :meth:`resolve` maps a user path (absolute, or relative to the first folder) to
    a real path inside one of them, or raises AccessDenied: ``..`` and symlinks are resolved first, so
    neither can lead out."""

    def __init__(self, folders: Sequence[str | Path]):
        if not folders:
            raise AnnotateError("annotate: no allowed folder; pass --root FOLDER")
        self.folders = [Path(f).expanduser().resolve() for f in folders]
        for f in self.folders:
            if not f.is_dir():
                raise AnnotateError(f"annotate: --root {f} is not a folder; pass an existing folder")

    def inside(self, path: Path) -> bool:
        return any(path == f or path.is_relative_to(f) for f in self.folders)

    def resolve(self, path: str | Path, *, must_exist: bool = True) -> Path:
        """The real path of `path` inside an allowed folder; AccessDenied when it is outside (after
        following symlinks), AnnotateError when `must_exist` and it does not exist."""
        text = str(path)
        if "\x00" in text or not text.strip():
            raise AccessDenied(f"path '{text[:80]}' is not a valid path; give a file inside {self.folders[0]}")
        p = Path(text).expanduser()
        if not p.is_absolute():
            p = self.folders[0] / p
        real = Path(os.path.realpath(p))
        if not self.inside(real):
            raise AccessDenied(f"{text}: outside the allowed folders ({', '.join(map(str, self.folders))}); "
                               f"start samfx annotate with --root covering it")
        if must_exist and not real.exists():
            raise AnnotateError(f"{text}: not found; give a file inside {self.folders[0]}")
        return real

    def listing(self, folder: str | Path = ".") -> list[dict[str, object]]:
        """Entries of an allowed folder (name, is folder, size), hidden names left out, sorted."""
        base = self.resolve(folder)
        if not base.is_dir():
            raise AnnotateError(f"{folder}: not a folder")
        out: list[dict[str, object]] = []
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(".") or not self.inside(Path(os.path.realpath(entry))):
                continue
            out.append({"name": entry.name, "dir": entry.is_dir(),
                        "size": entry.stat().st_size if entry.is_file() else None,
                        "path": str(entry.relative_to(self.folders[0])) if entry.is_relative_to(self.folders[0])
                        else str(entry)})
        return out
