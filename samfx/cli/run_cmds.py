"""`samfx train | eval | predict` (torch is imported inside the commands)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from samfx.cli.app import app, emit_json, fail
from samfx.contracts.errors import SamfxError


def _split_recipe_args(recipe: Optional[str], overrides: list[str], resume: Optional[str]) -> tuple[str, list[str]]:
    """With --resume the recipe file is optional: default to the run's recipe.yaml."""
    if resume is not None:
        if recipe is not None and "=" in recipe and not Path(recipe).exists():
            overrides = [recipe, *overrides]
            recipe = None
        if recipe is None:
            stored = Path(resume).expanduser() / "recipe.yaml"
            if not stored.parent.is_dir():
                raise SamfxError(f"--resume {resume}: no such run folder; check the path")
            if not stored.is_file():
                raise SamfxError(f"--resume {resume}: no recipe.yaml in that folder; is it a samfx run folder?")
            recipe = str(stored)
    if recipe is None:
        raise SamfxError("train: missing RECIPE; e.g. `samfx train recipes/samus.yaml` (or `--resume RUN_DIR`)")
    return recipe, overrides


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc-per-node":
            skip = True
        elif not a.startswith("--nproc-per-node="):
            out.append(a)
    return out


@app.command()
def train(recipe: Optional[str] = typer.Argument(None, help="Recipe YAML (optional with --resume: the run's own)."),
          overrides: Optional[list[str]] = typer.Argument(None, help="key.path=value overrides."),
          resume: Optional[str] = typer.Option(None, "--resume", help="Continue this run folder where it stopped."),
          out: Optional[str] = typer.Option(None, "--out", help="Run folder (default: train.out_dir/<recipe>-<time>)."),
          nproc_per_node: int = typer.Option(1, "--nproc-per-node",
                                             help="DDP processes on this machine (re-runs itself under torchrun)."),
          quiet: bool = typer.Option(False, "--quiet", help="No progress output.")) -> None:
    """Train a recipe's stages into a run folder; `--resume RUN` continues a stopped run exactly."""
    from samfx.engine.run import distributed as D

    if nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        D.launch(nproc_per_node, _without_nproc(sys.argv[1:]))
    from samfx import api

    try:
        path, extra = _split_recipe_args(recipe, list(overrides or []), resume)
        if resume is not None and out is not None and Path(out).resolve() != Path(resume).resolve():
            raise SamfxError(f"--out {out} and --resume {resume} name different folders; give only --resume")
        try:
            if resume is not None:
                result = api.resume(resume, path, overrides=extra, quiet=quiet)
            else:
                result = api.train(path, out, overrides=extra, quiet=quiet)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM, with last.pt written (samfx.engine.train.interrupt)
            fail(SamfxError(str(exc) or "interrupted"), code=getattr(exc, "exit_code", 130))
        if not quiet and D.env_info().is_main:
            typer.echo(f"run folder: {result['run']}")
            for st in result["stages"]:
                best = st.get("best") or {}
                if best:
                    typer.echo(f"  stage {st['stage']}: best {best['metric']} {best['value']:.4f} "
                               f"(epoch {best['epoch'] + 1}, step {best['step']})")
    except SamfxError as exc:
        fail(exc)
    finally:
        D.cleanup()


@app.command("eval")
def eval_cmd(target: str = typer.Argument(..., help="Run folder (uses best.pt, else last.pt) or checkpoint file."),
             data: Optional[str] = typer.Option(None, "--data", help="Store file (.h5) or dataset as YAML, "
                                                                     "e.g. '{name: camus, root: DIR}'."),
             split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate (default: eval.split)."),
             prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt generator (default: eval.prompt, "
                                                                         "else the last stage's)."),
             device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
             compat_row_hd: bool = typer.Option(False, "--compat-row-hd", help="Also report the SAMUS authors' "
                                                "row-Hamming 'HD' (not a distance)."),
             limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images."),
             html: bool = typer.Option(False, "--report", help="Then write the HTML run report (docs/report.md), "
                                                             "RUN/report-<split>[-<prompt>].html unless --report-out."),
             html_out: Optional[str] = typer.Option(None, "--report-out", help="Where --report writes (implies it)."),
             as_json: bool = typer.Option(False, "--json", help="Print the JSON report (docs/metrics.md).")) -> None:
    """Dice, IoU, HD and HD95 per class, per image and per patient; writes eval-<split>.json."""
    from samfx import api
    from samfx.engine.eval.evaluate import print_table

    try:
        report = api.evaluate(target, split=split, data=data, prompt=prompt, device=device,
                              compat_row_hd=True if compat_row_hd else None, limit=limit)
        if html or html_out:
            report["html_report"] = str(api.report(Path(report["written"]).parent, split=report["split"],
                                                   out=html_out, device=device, prompt=prompt))
    except SamfxError as exc:
        fail(exc)
    if as_json:
        emit_json(report)
        return
    print_table(report)
    typer.echo(f"report: {report['written']}")
    if "html_report" in report:
        typer.echo(f"html report: {report['html_report']}")


@app.command()
def predict(checkpoint: str = typer.Argument(..., help="Run folder, checkpoint file or exported .onnx file."),
            inputs: list[str] = typer.Argument(..., help="PNG/JPEG/TIFF images, NIfTI (.nii/.nii.gz), "
                                                         "samfx .h5 stores, DICOM files or folders of them, "
                                                         "MP4/AVI videos."),
            out: str = typer.Option(..., "--out", help="Output folder."),
            prompt: Optional[str] = typer.Option(None, "--prompt", help="Automatic prompt generator to use "
                                                                        "(clicks/boxes need ground truth)."),
            device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
            engine: Optional[str] = typer.Option(None, "--engine", help="torch (a run folder or checkpoint) | "
                                                 "onnx (a file from `samfx export`, run by onnxruntime on the "
                                                 "CPU); default: onnx for a .onnx path, else torch."),
            first_mask: Optional[str] = typer.Option(None, "--first-mask", help="Frame 0's label map (PNG of "
                                                     "class ids) of the one sequence input: a temporal model "
                                                     "carries it through the sequence (semi-supervised)."),
            any_modality: bool = typer.Option(False, "--any-modality", help="Also segment DICOMs whose Modality "
                                              "is not US (refused by default)."),
            skip_bad: bool = typer.Option(False, "--skip-bad", help="Report a bad input file in one line and "
                                          "predict the rest (default: the first bad file stops the command)."),
            precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | bf16 | int8 | int8-bf16 (CPU) | "
                                                    "auto (per device and CPU flags); refused when it misses its "
                                                    "accuracy gate on the model; default: the recipe's "
                                                    "train.precision (fp32 on CPU)."),
            as_json: bool = typer.Option(False, "--json", help="Print predictions.json.")) -> None:
    """Label maps + overlays per image; per-frame masks, the LV area curve, ED/ES and an EF estimate per sequence
    (withheld when the sequence fails the plausibility rules of docs/temporal.md)."""
    from samfx import api
    from samfx.deploy.caveats import provenance_line

    try:
        report = api.predict(checkpoint, inputs, out, prompt=prompt, device=device, engine=engine,
                             first_mask=first_mask, any_modality=any_modality, skip_bad=skip_bad,
                             precision=precision)
    except SamfxError as exc:
        fail(exc)
    if as_json:
        emit_json(report)
        return
    typer.echo(provenance_line(report["model"]))
    for line in report["skipped"]:
        typer.echo(f"skipped (bad): {line}")
    for r in report["results"]:
        what = r.get("label") or r.get("lv_area_csv")
        ef = ""
        if r.get("withheld"):
            ef = f"; EF, volumes, ED/ES withheld: {r['withheld']}"
        elif r.get("ef_estimate") is not None:
            ef = f"; EF {r['ef_estimate']:.1f} % ({r['ef_method']}; ED {r['ed']}, ES {r['es']})"
        typer.echo(f"{r['name']}: {r['frames']} frame(s) -> {what}{ef}")
        for warning in r["warnings"]:
            typer.echo(f"{r['name']}: warning: {warning}")
    typer.echo(f"written to {report['out']} (predictions.json)")
