"""Serving the ``samfx annotate`` app with uvicorn: from the command line (:func:`make_uvicorn` on a socket
from :func:`samfx.deploy.annotate.server.bind`) or from a daemon thread (:class:`Background`: tests,
notebooks)."""
from __future__ import annotations

import threading
from typing import Any

from samfx.deploy.annotate.routes import build_app
from samfx.deploy.annotate.server import AnnotateServer, bind, url_of


def make_uvicorn(server: AnnotateServer, log_level: str = "warning") -> Any:
    """A uvicorn.Server for the app; run it with ``.run(sockets=[bind(host, port)])``."""
    import uvicorn

    config = uvicorn.Config(build_app(server), log_level=log_level, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


class Background:
    """The app served from a daemon thread (tests, notebooks): ``url``; :meth:`stop` ends it."""

    def __init__(self, server: AnnotateServer, host: str = "127.0.0.1", port: int = 0):
        self.server = server
        self.sock = bind(host, port)
        self.url = url_of(self.sock, server.token)
        self.base = self.url.split("/?")[0]
        self.uv = make_uvicorn(server)
        self.thread = threading.Thread(target=self.uv.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.uv.started:
                break
            threading.Event().wait(0.05)

    def stop(self) -> None:
        self.uv.should_exit = True
        self.thread.join(10)
        self.sock.close()
        self.server.shutdown()
