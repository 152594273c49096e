"""Inference throughput and peak RSS: PyTorch eager fp32 vs onnxruntime (CPU) on the same model.

Each model is built from its recipe with random weights (seed 0; speed does not depend on the
weights), exported once with `samfx.deploy.export_onnx.export_model` (the graph `samfx export` writes), and
every (engine, model, batch) is measured in its own fresh subprocess, so that its peak RSS (ru_maxrss:
model + session + activations) is its own. Timed: the end-to-end automatic forward, every class
queried (PyTorch: `predict_classes` under no_grad, what `samfx predict` runs; onnxruntime: the
exported graph), after one warm-up batch; img/s = batch / median seconds per batch.

    python benchmarks/onnx_vs_torch.py --models quick vit_b --batches 1 8 --threads 2 --out onnx_bench.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/onnx_vs_torch.py --models quick --reuse   # torch's OpenMP
        # threads sleep instead of spinning while they wait: much faster when other processes share the cores
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "quick": ("recipes/autosamus_msff_quick.yaml", []),       # tiny SAMUS + MSFF + APG, 128²
    "vit_b": ("recipes/autosamus.yaml", []),                  # SAMUS vit_b + APG, 256²
}


def _build(name: str):
    from samfx import api

    recipe_path, overrides = MODELS[name]
    import torch

    rec = api.load_recipe(ROOT / recipe_path, overrides)
    torch.manual_seed(0)
    return api.build_model(rec, load_checkpoint=False).eval(), rec


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # kB on Linux


def export(name: str, path: Path) -> dict:
    from samfx.deploy.export_onnx import export_model

    model, rec = _build(name)
    t = time.perf_counter()
    export_model(model, rec, path)
    return {"export_s": round(time.perf_counter() - t, 1), "onnx_mib": round(path.stat().st_size / 2**20, 1)}


def worker(engine: str, name: str, batch: int, threads: int, reps: int, onnx_path: Path) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if engine == "torch":
        from samfx.engine.eval.inference import predict_classes

        model, rec = _build(name)
        classes = [int(c) for c in rec.config["data"]["classes"]]
        size = model.image_size

        def run(x: np.ndarray) -> None:
            predict_classes(model, torch.from_numpy(x), classes)
    else:
        from samfx.deploy.onnx_runtime import OnnxModel

        runner = OnnxModel.load(onnx_path, threads=threads)
        size = runner.image_size

        def run(x: np.ndarray) -> None:
            runner.run(x)
    load_s = time.perf_counter() - t0
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    run(x)                                                        # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"engine": engine, "model": name, "batch": batch, "threads": threads, "reps": reps,
            "median_s": round(med, 4), "min_s": round(min(times), 4), "img_s": round(batch / med, 2),
            "peak_rss_gib": round(_rss_gib(), 3), "load_s": round(load_s, 1), "loadavg": os.getloadavg()[0]}


def _sub(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=ROOT / ".cache" / "onnx_bench", help="where the .onnx files go")
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    ap.add_argument("--reuse", action="store_true", help="keep an .onnx file already in --dir (no re-export)")
    ap.add_argument("--worker", nargs=3, metavar=("ENGINE", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--export", metavar="MODEL", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.export:
        print(json.dumps(export(args.export, args.dir / f"{args.export}.onnx")))
        return []
    if args.worker:
        engine, name, batch = args.worker
        print(json.dumps(worker(engine, name, int(batch), args.threads, args.reps, args.dir / f"{name}.onnx")))
        return []
    args.dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    common = ["--threads", str(args.threads), "--reps", str(args.reps), "--dir", str(args.dir)]
    rows = []
    wait = os.environ.get("OMP_WAIT_POLICY", "-")
    print("| model | batch | engine | threads | OMP_WAIT_POLICY | img/s | median s/batch | peak RSS GiB | load avg |",
          flush=True)
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for name in args.models:
        path = args.dir / f"{name}.onnx"
        if args.reuse and path.is_file():
            info = {"export_s": None, "onnx_mib": round(path.stat().st_size / 2**20, 1)}
        else:
            info = _sub(["--export", name, *common], env)
        print(f"<!-- {name}: exported in {info['export_s']} s, {info['onnx_mib']} MiB -->", flush=True)
        for batch in args.batches:
            for engine in ("torch", "onnx"):
                row = {**_sub(["--worker", engine, name, str(batch), *common], env), **info}
                rows.append(row)
                row["omp_wait_policy"] = wait
                print(f"| {name} | {batch} | {engine} | {args.threads} | {wait} | {row['img_s']} | {row['median_s']} | "
                      f"{row['peak_rss_gib']} | {row['loadavg']:.1f} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
