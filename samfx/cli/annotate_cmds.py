"""`samfx annotate [RUN] [FILES...]`: segment images and cine loops by hand in the browser with a trained
model's help (samfx.deploy.annotate; docs/annotate.md). Imports of torch and the web stack stay inside
the command (`samfx --help` loads none of them)."""
from __future__ import annotations

from typing import Optional

import typer

from samfx.cli.app import app, fail
from samfx.contracts.errors import SamfxError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def annotate(target: str = typer.Argument(..., help="Run folder (best.pt, else last.pt) or checkpoint whose "
                                          "model helps; an exported .onnx model is refused."),
             files: Optional[list[str]] = typer.Argument(None, help="Images, NIfTI, DICOM, MP4/AVI or .h5 store "
                                                         "files that every new browser tab opens first."),
             root: Optional[list[str]] = typer.Option(None, "--root", help="Folder whose files may be read and "
                                                      "written (repeatable; default: the current folder)."),
             host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback "
                                      "exposes the app to the network (the token is still required)."),
             port: int = typer.Option(8765, "--port", help="Port (0: any free port)."),
             device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
             prompt: Optional[str] = typer.Option(None, "--prompt", help="Automatic prompt generator for "
                                                  "'Automatic' (default: the run's eval prompt)."),
             threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
             max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", help="Largest upload accepted."),
             cache_mb: float = typer.Option(1024.0, "--cache-mb", help="Memory for cached frame embeddings.")) -> None:
    """A local web app: click, box, brush, automatic and propagation through a loop; saves PNG, NIfTI, a samfx
    store (`samfx train` reads it) and the session. Prints the URL to open (with its per-start token)."""
    try:
        _serve(target, files or [], root or ["."], host, port, device, prompt, threads, max_upload_mb, cache_mb)
    except SamfxError as exc:
        fail(exc)


def _serve(target: str, files: list[str], roots: list[str], host: str, port: int, device: str,
           prompt: str | None, threads: int, max_upload_mb: float, cache_mb: float) -> None:
    from samfx.deploy.annotate.access import AnnotateError, Roots

    if target.lower().endswith(".onnx"):
        raise AnnotateError(f"{target}: annotate needs the torch model (a run folder or checkpoint) to decode "
                            f"clicks on cached embeddings; an exported ONNX graph takes images only. Pass the "
                            f"run folder it was exported from")
    allowed = Roots(roots)
    for f in files:
        allowed.resolve(f)
    import torch

    from samfx import api
    from samfx.deploy.annotate.modelops import ModelOps
    from samfx.deploy.annotate.serve import make_uvicorn
    from samfx.deploy.annotate.server import AnnotateServer, Limits, bind, url_of

    if threads > 0:
        torch.set_num_threads(threads)
    run = api.load_run(target, prompt=prompt, device=device)
    server = AnnotateServer(ModelOps(run), allowed, limits=Limits(upload_mb=max_upload_mb, cache_mb=cache_mb),
                            files=list(files))
    sock = bind(host, port)
    if host not in LOOPBACK:
        typer.echo(f"warning: listening on {host}, not loopback: anyone who can reach this machine and has the "
                   f"token can read and write files under {', '.join(map(str, allowed.folders))}", err=True)
    typer.echo(f"samfx annotate: {run.checkpoint} ({', '.join(run.class_names)}; automatic prompt {run.prompt})")
    typer.echo(f"open {url_of(sock, server.token)}")
    typer.echo("Ctrl-C stops the server (save first: unsaved work is in the browser's session only)")
    try:
        make_uvicorn(server).run(sockets=[sock])
    finally:
        server.shutdown()
        sock.close()
