"""`samfx export`: a trained run as an ONNX graph (docs/deploying.md; torch and onnx imported inside)."""
from __future__ import annotations

from typing import Optional

import typer

from samfx.cli.app import app, emit_json, fail
from samfx.contracts.errors import SamfxError


@app.command()
def export(target: str = typer.Argument(..., help="Run folder (uses best.pt, else last.pt) or checkpoint file."),
           out: str = typer.Option(..., "--out", help="ONNX file to write, e.g. model.onnx."),
           fmt: str = typer.Option("onnx", "--format", help="Export format: onnx (the only one)."),
           part: str = typer.Option("all", "--part", help="all: the automatic model end to end (images -> "
                                    "per-class logits and label map); encoder | decoder: the two halves of a "
                                    "prompted (click) model, the decoder with SAM-style point inputs."),
           prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt generator to build in (default: "
                                                "the checkpoint's)."),
           quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: MatMul weights quantised to "
                                                  "int8 by onnxruntime (CPU), refused when the graph misses the "
                                                  "accuracy gate against fp32 (docs/deploying.md)."),
           as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON.")) -> None:
    """Export a trained model to ONNX (opset 18, dynamic batch, metadata for onnxruntime)."""
    try:
        if fmt != "onnx":
            raise SamfxError(f"--format: unknown format '{fmt}'; only onnx is supported")
        from samfx.deploy.export_onnx import export_onnx

        result = export_onnx(target, out, part=part, prompt=prompt, quantize=quantize)
    except SamfxError as exc:
        fail(exc)
    if as_json:
        emit_json({"out": str(result.path), "part": result.part, "opset": result.opset,
                   "exporter": result.exporter, "metadata": result.metadata})
        return
    meta = result.metadata
    typer.echo(f"wrote {result.path} (part {result.part}, opset {result.opset}, classes {meta['classes']}, "
               f"image size {meta['image_size']}{', int8' if meta.get('precision') == 'int8' else ''})")
