"""`samfx show RECIPE --sites`: where adapters can attach (docs/plugins.md, "Adapter sites")."""
from __future__ import annotations

from typing import Any

import typer

from samfx.cli.app import emit_json


def print_sites(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("this encoder has no adapter sites")
        return
    width = max(len(r["name"]) for r in rows)
    typer.echo(f"{'site':<{width}}  layout  in    out   spatial   adapters")
    for r in rows:
        spatial = "x".join(map(str, r["spatial"])) if r["spatial"] else "-"
        typer.echo(f"{r['name']:<{width}}  {r['layout']:<6}  {r['in_dim']:<5} {r['out_dim']:<5} {spatial:<9} "
                   f"{', '.join(r['adapters']) or '-'}".rstrip())
