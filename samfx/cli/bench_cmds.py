"""`samfx bench RECIPE`: throughput and peak memory table + JSON (docs/performance.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from samfx.cli.app import app, emit_json, fail
from samfx.contracts.errors import SamfxError


@app.command()
def bench(recipe: str = typer.Argument(..., help="Recipe YAML file."),
          overrides: Optional[list[str]] = typer.Argument(None, help="key.path=value overrides."),
          device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
          batch: Optional[int] = typer.Option(None, "--batch", help="Training batch size (images; default: the "
                                                                    "recipe's data.batch_size)."),
          infer_batch: list[int] = typer.Option([1, 32], "--infer-batch", help="Inference batch sizes."),
          steps: int = typer.Option(10, "--steps", help="Timed steps per configuration."),
          warmup: int = typer.Option(3, "--warmup", help="Untimed warm-up steps (compiled: at least 1, "
                                                         "which absorbs compile time)."),
          mode: list[str] = typer.Option(["eager", "compiled"], "--mode", help="eager and/or compiled."),
          precision: list[str] = typer.Option(["fp32", "bf16"], "--precision", help="fp32 and/or bf16 (autocast)."),
          stage: Optional[list[str]] = typer.Option(None, "--stage", help="Training stage name or index "
                                                                          "(repeatable; default: every stage)."),
          only: Optional[str] = typer.Option(None, "--only", help="train or infer (default: both)."),
          threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)."),
          compile_mode: str = typer.Option("default", "--compile-mode",
                                           help="torch.compile mode: default | reduce-overhead | max-autotune"),
          profile: Optional[Path] = typer.Option(None, "--profile", help="Write a torch.profiler op table per "
                                                                         "configuration into this folder."),
          out: Optional[Path] = typer.Option(None, "--out", help="Write the JSON report here."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Training-step and inference throughput (img/s) and peak memory, eager/compiled, fp32/bf16."""
    from samfx.engine.bench.run import run_bench

    if compile_mode not in ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        fail(SamfxError(f"--compile-mode {compile_mode!r}: use default, reduce-overhead or max-autotune"))
    try:
        report = run_bench(recipe, overrides or [], device, batch, tuple(infer_batch), steps, warmup,
                           tuple(mode), tuple(precision), stages=stage, only=only, threads=threads,
                           compile_mode=compile_mode, profile_dir=profile, out=out)
    except SamfxError as exc:
        fail(exc)
    if as_json:
        emit_json(report)
        return
    from rich.console import Console
    from rich.table import Table

    info = report["info"]
    table = Table(title=f"samfx bench {recipe} on {info['device']} (torch {info['torch']}, "
                        f"{info['queries_per_image']} queries/image, rel-pos {info['rel_pos_mode']})")
    for col in ("mode", "stage", "compiled", "precision", "batch", "img/s", "ms/step", "min ms", "first s",
                "peak GiB", "note"):
        table.add_column(col)
    for r in report["results"]:
        table.add_row(r["mode"], r["stage"], str(r["compiled"]), r["precision"], str(r["batch"]),
                      f"{r['img_per_s']:.1f}", f"{r['step_ms']:.1f}", f"{r['step_ms_min']:.1f}",
                      f"{r['first_step_s']:.1f}", f"{r['peak_mem_gib']:.2f}", r["error"])
    console = Console()
    Console(width=max(console.width, 140)).print(table)
