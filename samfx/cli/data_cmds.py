"""`samfx data ...`: create, import, inspect and preview samfx HDF5 stores (docs/data.md).

Heavy imports (h5py, numpy, nibabel, av) stay inside the commands so `samfx --help` stays fast.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from samfx.cli.app import data_app, emit_json, fail
from samfx.contracts.errors import SamfxError

# shared by every command that writes a store (also samfx/cli/data_import_cmds.py, byod_cmds.py)
OUT_OPTION = typer.Option(..., "--out", "-o", help="Store file to write (.h5); must not exist unless --force.")
FORCE_OPTION = typer.Option(False, "--force",
                            help="Replace --out when it is an existing samfx store (never another file).")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


def print_report(report: Any, as_json: bool) -> None:
    """An importer's report: its summary lines, or with --json the report as JSON."""
    if as_json:
        emit_json(report.to_json())
    else:
        for line in report.summary_lines():
            typer.echo(line)


def _v2_options(pairs: Optional[list[str]]) -> dict[str, Any]:
    """--v2 KEY=VALUE pairs as a mapping (values read as YAML: 0.5, true, [0.3, 0.4, 0.3])."""
    import yaml

    from samfx.contracts.errors import DataError

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--v2: expected KEY=VALUE (e.g. --v2 shadow=0), got '{pair}'")
        out[key.strip()] = yaml.safe_load(value)
    return out


@data_app.command()
def synth(out: Path = OUT_OPTION,
          patients: int = typer.Option(50, "--patients", help="Number of patients (each: 2CH and 4CH)."),
          seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same data."),
          frames: int = typer.Option(12, "--frames", help="Frames per sequence (>= 2; v1 and v2 half cycles: "
                                                           "ED->ES, v2 full cycles: ED->ES->ED)."),
          size: tuple[int, int] = typer.Option((256, 288), "--size", help="Frame size H W in pixels."),
          wall_flicker: float = typer.Option(0.0, "--wall-flicker",
                                             help="0..1: wall dropouts fade in and out over a sequence (0: fixed). "
                                                  "v1 only."),
          version: int = typer.Option(1, "--version", help="Generator: 1 (frozen) or 2 (beam-domain physics)."),
          v2: Optional[list[str]] = typer.Option(None, "--v2", help="A generator v2 option KEY=VALUE "
                                                                     "(repeatable; docs/data.md lists them)."),
          force: bool = FORCE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Generate synthetic apical 2CH/4CH echocardiography sequences (labels LV=1, MYO=2, LA=3)."""
    from samfx.data.synth.store import generate

    start = time.perf_counter()
    try:
        if v2 and version != 2:
            from samfx.contracts.errors import DataError

            raise DataError("--v2: generator v2 options need --version 2")
        path = generate(out, patients=patients, seed=seed, frames=frames, size=size, show_progress=not as_json,
                        wall_flicker=wall_flicker, force=force, version=version, v2=_v2_options(v2))
    except SamfxError as exc:
        fail(exc)
    info = {"out": str(path), "patients": patients, "sequences": 2 * patients, "frames": frames,
            "size": list(size), "seed": seed, "wall_flicker": wall_flicker, "version": version,
            "seconds": round(time.perf_counter() - start, 2)}
    if as_json:
        emit_json(info)
    else:
        typer.echo(f"wrote {path}: {patients} patients, {2 * patients} sequences of {frames} frames "
                   f"{size[0]}x{size[1]} (generator v{version}) in {info['seconds']} s")


@data_app.command()
def stats(path: Path = typer.Argument(..., help="Store file (.h5)."), as_json: bool = JSON_OPTION) -> None:
    """Counts, splits, shapes, spacing, class area fractions and the EF distribution of a store."""
    from samfx.data.stats import store_stats

    try:
        report = store_stats(path)
    except SamfxError as exc:
        fail(exc)
    if as_json:
        emit_json(report)
        return
    c = report["counts"]
    typer.echo(f"{report['path']} (source: {report['source']})")
    typer.echo(f"  classes: {', '.join(f'{k}={v}' for k, v in report['classes'].items())}")
    typer.echo(f"  patients {c['patients']}, samples {c['samples']}, sequences {c['sequences']}, frames "
               f"{c['frames']} ({c['labeled_frames']} labeled), label maps {c['label_maps']}")
    typer.echo("  views: " + ", ".join(f"{k} {v}" for k, v in report["views"].items()))
    for name, s in report["splits"].items():
        typer.echo(f"  split {name}: {s['patients']} patients, {s['samples']} samples, {s['sequences']} sequences")
    if report["image_shape"]:
        typer.echo(f"  image shape (H, W): min {tuple(report['image_shape']['min'])}, "
                   f"max {tuple(report['image_shape']['max'])}")
    sp = report["spacing_mm"]
    typer.echo(f"  spacing mm/px: {sp['min'] if sp['min'] is None else round(sp['min'], 4)} .. "
               f"{sp['max'] if sp['max'] is None else round(sp['max'], 4)} (unknown: {sp['unknown_items']} items)")
    typer.echo("  area fraction: " + ", ".join(f"{k} {v:.4f}" for k, v in report["area_fraction"].items()))
    ef = report["ef"]
    typer.echo("  EF %: " + _dist_line(ef))
    if report.get("image_quality"):
        typer.echo("  image quality (patients): " + ", ".join(f"{k} {v}" for k, v in report["image_quality"].items()))
    if report.get("generator_version") is not None:
        typer.echo(f"  generator v{report['generator_version']}; sequences: "
                   + ", ".join(f"{k} cycle {v}" for k, v in (report["cycles"] or {}).items()))
        typer.echo("  sampled EF %: " + _dist_line(report["ef_target"]))
        typer.echo("  label EF - sampled EF: " + _dist_line(report["ef_error"]))


def _dist_line(d: Optional[dict[str, Any]]) -> str:
    return "unknown" if d is None else (f"mean {d['mean']:.1f}, std {d['std']:.1f}, min {d['min']:.1f}, "
                                        f"max {d['max']:.1f} (n={d['n']})")


@data_app.command()
def camus(root: Path = typer.Argument(..., help="CAMUS folder: database_nifti/ + database_split/ (2023 "
                                                 "release) or training/ + testing/ (2019 release, .mhd)."),
          out: Path = OUT_OPTION,
          seed: int = typer.Option(0, "--seed", help="Seed of the patient split when no split files exist."),
          sequences: bool = typer.Option(True, "--sequences/--no-sequences", help="Import the sequences too."),
          skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and report unreadable files."),
          force: bool = FORCE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Import CAMUS (2023 NIfTI or 2019 MetaImage release, detected): images, sequences, cfg, splits."""
    from samfx.data.importers.camus import import_camus

    try:
        report = import_camus(root, out, seed=seed, sequences=sequences, skip_bad=skip_bad, show_progress=not as_json,
                              force=force)
    except SamfxError as exc:
        fail(exc)
    print_report(report, as_json)


@data_app.command()
def us30k(root: Path = typer.Argument(..., help="US30K folder (holding MainPatient/ and dataset folders)."),
          out: Path = OUT_OPTION,
          dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="Only this dataset (repeatable)."),
          strict: bool = typer.Option(False, "--strict", help="Fail on the first listed-but-missing file."),
          skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and report unreadable files."),
          force: bool = FORCE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Import the SAMUS authors' US30K PNG layout; listed-but-missing files are reported."""
    from samfx.data.importers.us30k import import_us30k

    try:
        report = import_us30k(root, out, datasets=dataset or None, strict=strict, skip_bad=skip_bad,
                              show_progress=not as_json, force=force)
    except SamfxError as exc:
        fail(exc)
    print_report(report, as_json)


@data_app.command()
def echonet(root: Path = typer.Argument(..., help="EchoNet-Dynamic folder (FileList.csv, VolumeTracings.csv, "
                                                   "Videos/)."),
            out: Path = OUT_OPTION,
            limit: Optional[int] = typer.Option(None, "--limit", help="Import only the first N videos."),
            skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and report undecodable videos."),
            force: bool = FORCE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Import EchoNet-Dynamic: AVI sequences with filled LV masks on the traced ED/ES frames."""
    from samfx.data.importers.echonet import import_echonet

    try:
        report = import_echonet(root, out, limit=limit, skip_bad=skip_bad, show_progress=not as_json,
                                 force=force)
    except SamfxError as exc:
        fail(exc)
    print_report(report, as_json)


@data_app.command()
def preview(path: Path = typer.Argument(..., help="Store file (.h5)."),
            out: Path = typer.Option(..., "--out", "-o", help="PNG to write."),
            count: int = typer.Option(4, "--count", help="Labeled images to show."),
            frames: int = typer.Option(6, "--frames", help="Frames of one sequence to show."),
            seed: int = typer.Option(0, "--seed", help="Which images / sequence (random draw).")) -> None:
    """Write a PNG of a few labeled images with their labels and frames of one sequence."""
    from samfx.data.preview import write_preview

    try:
        written = write_preview(path, out, count=count, frames=frames, seed=seed)
    except SamfxError as exc:
        fail(exc)
    typer.echo(f"wrote {written}")
