"""The ``samfx annotate`` web app (Starlette, served by uvicorn): a token on every request, sessions by
random id, files only inside the allowed folders, bounded uploads; every answer about a session comes
from its :class:`~samfx.deploy.annotate.session.AnnotationSession`. Routes are in
:mod:`samfx.deploy.annotate.routes`; docs/annotate.md describes the safety model."""
from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samfx.deploy.annotate.access import AccessDenied, AnnotateError, Roots, new_token, same_token
from samfx.deploy.annotate.features import FeatureCache
from samfx.deploy.annotate.loops import open_loop
from samfx.deploy.annotate.modelops import ModelOps
from samfx.deploy.annotate.save import load_document
from samfx.deploy.annotate.session import AnnotationSession

COOKIE = "samfx_annotate_token"
HEADER = "x-samfx-token"


@dataclass
class Limits:
    """Bounds: upload and JSON body sizes (MB), open sessions, the feature cache and undo history (MB)."""

    upload_mb: float = 200.0
    json_mb: float = 4.0
    sessions: int = 16
    cache_mb: float = 1024.0
    history_mb: float = 256.0


@dataclass
class AnnotateServer:
    """Everything the app holds: the model, the shared feature cache, the sessions by id, the token."""

    ops: ModelOps
    roots: Roots
    token: str = field(default_factory=new_token)
    limits: Limits = field(default_factory=Limits)
    files: list[str] = field(default_factory=list)        # opened first by each new tab (the CLI's FILES)
    sessions: dict[str, AnnotationSession] = field(default_factory=dict)
    uploads: Path | None = None

    def __post_init__(self) -> None:
        self.cache = FeatureCache(self.limits.cache_mb)
        self.lock = threading.Lock()

    def check_token(self, given: str | None) -> None:
        if not same_token(given, self.token):
            raise AccessDenied("missing or wrong token; open the URL that samfx annotate printed (with ?token=)")

    def upload_folder(self) -> Path:
        """A private temporary folder for uploads, allowed for reading and writing (removed at shutdown)."""
        if self.uploads is None:
            self.uploads = Path(tempfile.mkdtemp(prefix="samfx-annotate-uploads-")).resolve()
            self.roots.folders.append(self.uploads)
        return self.uploads

    def session(self, sid: str) -> AnnotationSession:
        with self.lock:
            found = self.sessions.get(sid)
        if found is None:
            raise KeyError(sid)
        return found

    def open(self, path: str, item: int | str = 0, document: str | None = None) -> tuple[str, AnnotationSession]:
        """A new session on `path` (inside the allowed folders) item `item`, or reopened from a saved
        session JSON `document` (its operations replayed); returns (session id, session)."""
        ops: list[dict[str, Any]] = []
        if document:
            doc = load_document(self.roots.resolve(document))
            path, item, ops = str(doc.get("source", "")), str(doc.get("item", 0)), doc["ops"]
        with self.lock:
            if len(self.sessions) >= self.limits.sessions:
                raise AnnotateError(f"already {len(self.sessions)} open sessions (the limit); close a tab's "
                                    f"session or restart samfx annotate")
        loop = open_loop(self.roots.resolve(path), _item(item, loop_name=bool(document)))
        sid = secrets.token_hex(16)
        session = AnnotationSession(self.ops, loop, cache=self.cache, key=sid, history_mb=self.limits.history_mb)
        try:
            session.replay(ops)
        except Exception:
            session.close()
            raise
        with self.lock:
            self.sessions[sid] = session
        return sid, session

    def close(self, sid: str) -> None:
        with self.lock:
            session = self.sessions.pop(sid, None)
        if session is not None:
            session.close()

    def shutdown(self) -> None:
        for sid in list(self.sessions):
            self.close(sid)
        if self.uploads is not None:
            shutil.rmtree(self.uploads, ignore_errors=True)


def _item(item: int | str, loop_name: bool) -> int | str:
    if loop_name or not str(item).lstrip("-").isdigit():
        return str(item)
    return int(item)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one. AnnotateError when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AnnotateError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port (0: any "
                            f"free port)") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, token: str) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"
