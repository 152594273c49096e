"""The HTTP routes of ``samfx annotate`` (Starlette). Every request needs the token (``?token=`` once,
which sets a same-site cookie, then the cookie or the ``X-Samfx-Token`` header); session routes need the
session's random id. Errors come back as ``{"error": one line}`` with 400 (a bad request), 403 (token or
path), 404 (no such session), 413 (too large) or 500 (a server bug: the session is left as it was)."""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from samfx.contracts.errors import SamfxError
from samfx.data.files import jsonable
from samfx.deploy.annotate.access import AccessDenied, AnnotateError, TooLarge
from samfx.deploy.annotate.save import save_all
from samfx.deploy.annotate.server import COOKIE, HEADER, AnnotateServer

LOG = logging.getLogger("samfx.annotate")
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,120}$")
Handler = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class TokenGate:
    """ASGI middleware: a request without the token gets 403 before any route runs; ``?token=`` sets
    the cookie (HttpOnly, SameSite=Strict) so that the page's own requests carry it."""

    def __init__(self, app: ASGIApp, server: AnnotateServer):
        self.app, self.server = app, server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token") or request.headers.get(HEADER) or request.cookies.get(COOKIE)
        try:
            self.server.check_token(given)
        except AccessDenied as exc:
            await error(403, str(exc))(scope, receive, send)
            return
        if request.query_params.get("token"):
            token = self.server.token

            async def send_cookie(message: Any) -> None:
                if message["type"] == "http.response.start":
                    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
                await send(message)

            await self.app(scope, receive, send_cookie)
            return
        await self.app(scope, receive, send)


def guarded(fn: Handler) -> Handler:
    """Errors as one-line JSON answers; an unexpected one is logged with its traceback and answered 500."""

    async def run(request: Request) -> Response:
        try:
            return await fn(request)
        except TooLarge as exc:
            return error(413, str(exc))
        except AccessDenied as exc:
            return error(403, str(exc))
        except KeyError as exc:
            return error(404, f"no session {exc.args[0]!s:.12}…; it was closed or the server restarted: reopen "
                              f"the file")
        except SamfxError as exc:
            return error(400, str(exc))
        except Exception as exc:
            LOG.exception("samfx annotate: unexpected error in %s", request.url.path)
            return error(500, f"internal error ({type(exc).__name__}: {exc}); the session is as it was before "
                              f"this request and saved files are untouched; see the server's log")
    return run


async def body(request: Request, limit_mb: float) -> bytes:
    """The request body, refused (TooLarge) as soon as it passes `limit_mb` (declared or streamed)."""
    limit = int(limit_mb * 2**20)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {int(declared)} bytes is over the {limit_mb:g} MB limit "
                       f"(--max-upload-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body is over the {limit_mb:g} MB limit (--max-upload-mb)")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, server: AnnotateServer) -> dict[str, Any]:
    raw = await body(request, server.limits.json_mb)
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise AnnotateError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise AnnotateError("the request body must be a JSON object")
    return data


def build_app(server: AnnotateServer) -> Starlette:
    """The app: static page and files, then the JSON / binary API under /api."""
    r = Routes(server)
    table: list[tuple[str, Handler, str]] = [
        ("/", r.index, "GET"), ("/static/{name}", r.static, "GET"), ("/api/info", r.info, "GET"),
        ("/api/files", r.files, "GET"), ("/api/upload", r.upload, "POST"), ("/api/sessions", r.open, "POST"),
        ("/api/sessions/{sid}", r.state, "GET"), ("/api/sessions/{sid}", r.close, "DELETE"),
        ("/api/sessions/{sid}/frame/{t:int}", r.frame, "GET"), ("/api/sessions/{sid}/labels", r.labels, "GET"),
        ("/api/sessions/{sid}/prompts/{t:int}", r.prompts, "GET"),
        ("/api/sessions/{sid}/clinical", r.clinical, "GET"), ("/api/sessions/{sid}/op", r.op, "POST"),
        ("/api/sessions/{sid}/save", r.save, "POST")]
    routes = [Route(path, guarded(fn), methods=[method]) for path, fn, method in table]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate, server=server),
                                                Middleware(GZipMiddleware, minimum_size=1024)])


def _raw(arr: np.ndarray) -> Response:
    return Response(np.ascontiguousarray(arr, dtype=np.uint8).tobytes(), media_type="application/octet-stream",
                    headers={"cache-control": "no-store"})


class Routes:
    """The handlers; heavy work (the model, files) runs in Starlette's thread pool."""

    def __init__(self, server: AnnotateServer):
        self.server = server

    async def index(self, request: Request) -> Response:
        return await self.static_file("index.html")

    async def static(self, request: Request) -> Response:
        return await self.static_file(request.path_params["name"])

    async def static_file(self, name: str) -> Response:
        if name not in STATIC:
            raise KeyError(name)
        text = resources.files("samfx.deploy.annotate").joinpath("static").joinpath(name).read_text()
        return Response(text, media_type=STATIC[name], headers={
            "cache-control": "no-store", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
            "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'"})

    async def info(self, request: Request) -> Response:
        run = self.server.ops.run
        return JSONResponse({"classes": list(run.classes), "class_names": list(run.class_names),
                             "prompt": run.prompt, "temporal": self.server.ops.has_temporal,
                             "files": self.server.files, "root": str(self.server.roots.folders[0]),
                             "max_upload_mb": self.server.limits.upload_mb})

    async def files(self, request: Request) -> Response:
        folder = request.query_params.get("dir", ".")
        return JSONResponse({"entries": await run_in_threadpool(self.server.roots.listing, folder)})

    async def upload(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        if not _NAME.match(name) or name.startswith("."):
            raise AnnotateError(f"upload: file name {name[:40]!r} must be 1-120 letters, digits and _.- "
                                f"(no folders)")
        data = await body(request, self.server.limits.upload_mb)
        path = self.server.upload_folder() / name
        await run_in_threadpool(path.write_bytes, data)
        return JSONResponse({"path": str(path), "size": len(data)})

    async def open(self, request: Request) -> Response:
        data = await json_body(request, self.server)
        sid, session = await run_in_threadpool(self.server.open, str(data.get("path", "")), data.get("item", 0),
                                               data.get("session"))
        return JSONResponse({"session": sid, "state": jsonable(session.state())})

    async def state(self, request: Request) -> Response:
        session = self.server.session(request.path_params["sid"])
        return JSONResponse(jsonable(session.state()))

    async def close(self, request: Request) -> Response:
        self.server.close(request.path_params["sid"])
        return JSONResponse({"closed": True})

    def _frame_index(self, request: Request, n: int) -> int:
        t = int(request.path_params["t"])
        if not 0 <= t < n:
            raise AnnotateError(f"frame {t} is outside 0..{n - 1}")
        return t

    async def frame(self, request: Request) -> Response:
        session = self.server.session(request.path_params["sid"])
        return _raw(session.loop.frames[self._frame_index(request, session.num_frames)])

    async def labels(self, request: Request) -> Response:
        session = self.server.session(request.path_params["sid"])
        t = request.query_params.get("t")
        with session.lock:
            if t is None:
                return _raw(session.labels.copy())
            if not t.isdigit() or int(t) >= session.num_frames:
                raise AnnotateError(f"labels: frame {t!r} is outside 0..{session.num_frames - 1}")
            return _raw(session.labels[int(t)].copy())

    async def prompts(self, request: Request) -> Response:
        session = self.server.session(request.path_params["sid"])
        return JSONResponse(session.prompts_on(self._frame_index(request, session.num_frames)))

    async def clinical(self, request: Request) -> Response:
        session = self.server.session(request.path_params["sid"])
        return JSONResponse(jsonable(await run_in_threadpool(session.clinical)))

    async def op(self, request: Request) -> Response:
        session = self.server.session(request.path_params["sid"])
        data = await json_body(request, self.server)
        result = await run_in_threadpool(session.apply, data)
        return JSONResponse(jsonable({"result": result, "state": session.state()}))

    async def save(self, request: Request) -> Response:
        session = self.server.session(request.path_params["sid"])
        data = await json_body(request, self.server)
        roots = self.server.roots
        folder = roots.resolve(str(data.get("folder") or "."), must_exist=False)
        store = roots.resolve(str(data["store"]), must_exist=False) if data.get("store") else None
        formats = data.get("formats") or ["png", "nifti", "json"]
        if not isinstance(formats, list):
            raise AnnotateError("save: 'formats' must be a list of png, nifti, json")

        def write() -> dict[str, Any]:
            with session.lock:
                return save_all(session, folder, [str(f) for f in formats], store,
                                str(data.get("split") or "train"), data.get("patient") or None)

        return JSONResponse(await run_in_threadpool(write))
