"""Latency of `samfx annotate`'s model calls on the CPU, through the same session API the web app calls
(samfx.deploy.annotate.session), with random weights (speed does not depend on them):

    python benchmarks/annotate_latency.py [--threads 2] [--frames 12] [--repeats 30] [--rounds 1] [--json out.json]

Per model: click -> mask (the frame's embedding cached: prompt encoder + decoder + the label-map update),
propagate (per frame, embeddings cached), automatic (per frame, embeddings cached) and, for reference,
encoding one frame. p50 / p95 over the repeats (all rounds), in ms, and each measure's lowest per-round
p50 (the quietest round). Models: the main job's quick preset (recipes/autosamus_msff_quick.yaml: tiny
SAMUS 128², APG; no temporal module, so propagation prompts each frame with the previous mask), SAMUS
vit_b 256² (recipes/samus.yaml, automatic = the `none` prompt) and SAMUS vit_b + space-time memory
(recipes/samus_stm.yaml: propagation through the memory). The loop is a synthetic echo cine at 256×288.
Prints a markdown table with the load average before and after (timings on a shared machine move with it).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODELS = {"quick (AutoSAMUS+MSFF tiny 128²)": ("recipes/autosamus_msff_quick.yaml", None),
          "SAMUS vit_b 256²": ("recipes/samus.yaml", "none"),
          "SAMUS vit_b 256² + STM": ("recipes/samus_stm.yaml", "none")}


@dataclass
class BenchRun:
    """What samfx.api.load_run returns, for a freshly built (random) model."""

    model: Any
    recipe: Any
    classes: list[int]
    class_names: list[str]
    prompt: str
    precision: str = "fp32"


def build(recipe_path: str, prompt: str | None) -> BenchRun:
    from samfx import api
    from samfx.contracts.plugins import get_registry
    from samfx.engine.eval.evaluate import choose_prompt

    recipe = api.load_recipe(recipe_path)
    model = api.build_model(recipe, load_checkpoint=False).eval()
    key = choose_prompt(model, recipe, prompt, get_registry(), False, "benchmark")
    model.use_prompt(key)
    data = recipe.typed.data
    return BenchRun(model, recipe, list(data.classes), list(data.class_names), key)


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)


def one_round(s: Any, run: BenchRun, repeats: int, rng: np.random.Generator) -> dict[str, list[float]]:
    t_len, h, w = s.loop.shape
    cls = run.classes[0]
    clicks = []
    for i in range(repeats):
        x, y = float(rng.uniform(0.3, 0.7) * w), float(rng.uniform(0.3, 0.7) * h)
        clicks.append(timed(lambda: s.apply({"op": "click", "t": 0, "cls": cls, "x": x, "y": y})))
        if i % 3 == 2:                                   # 1-3 clicks per object, as a user gives
            s.apply({"op": "clear", "t": 0, "cls": cls})
    s.apply({"op": "click", "t": 0, "cls": cls, "x": w / 2, "y": h / 2})
    prop = [timed(lambda: s.apply({"op": "propagate", "t": 0})) / (t_len - 1) for _ in range(max(3, repeats // 10))]
    auto = [timed(lambda t=t: s.apply({"op": "automatic", "t": t})) for t in range(t_len)
            for _ in range(max(1, repeats // t_len))]
    return {"click": clicks, "propagate_per_frame": prop, "automatic_per_frame": auto}


def measure(run: BenchRun, loop: Any, repeats: int, rounds: int) -> dict[str, Any]:
    """p50 / p95 over every round's samples, and the lowest per-round p50 (the quietest round: on a shared
    machine the load changes from minute to minute)."""
    from samfx.deploy.annotate.modelops import ModelOps
    from samfx.deploy.annotate.session import AnnotationSession

    s = AnnotationSession(ModelOps(run), loop, precompute=False)
    encode = [timed(lambda t=t: s.features(t)) for t in range(loop.shape[0])]      # fills the cache
    rng = np.random.default_rng(0)
    per_round = [one_round(s, run, repeats, rng) for _ in range(rounds)]
    out: dict[str, Any] = {"encode_per_frame": percentiles(encode[1:] or encode), "propagation": s.last_method}
    for key in per_round[0]:
        samples = [v for r in per_round for v in r[key]]
        out[key] = percentiles(samples)
        out[f"{key}_best_round_p50"] = min(percentiles(r[key])[0] for r in per_round)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=1, help="repeat the measurements (same session, embeddings cached)")
    ap.add_argument("--models", nargs="*", default=list(MODELS), help="subset of: " + "; ".join(MODELS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    from samfx.data.synth.store import generate
    from samfx.deploy.annotate.loops import open_loop

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store = generate(Path(tmp) / "cine.h5", patients=1, frames=args.frames, size=(256, 288))
        loop = open_loop(store, "patient0001_4CH")
    load_before = os.getloadavg()
    results = {}
    for name in args.models:
        recipe, prompt = MODELS[name]
        results[name] = measure(build(recipe, prompt), loop, args.repeats, args.rounds)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    load_after = os.getloadavg()
    print(f"\ntorch {torch.__version__}, {args.threads} threads, loop {loop.shape[0]} frames 256×288, "
          f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min), "
          f"{os.cpu_count()} CPUs\n")
    print("| model | click→mask p50 / p95 (ms) | propagate per frame p50 / p95 (ms) | automatic per frame p50 / p95 "
          "(ms) | encode per frame p50 (ms) | propagation |")
    print("| --- | --- | --- | --- | --- | --- |")
    keys = ("click", "propagate_per_frame", "automatic_per_frame")
    for name, r in results.items():
        row = [f"{r[k][0]:.1f} / {r[k][1]:.1f} (best round p50 {r[k + '_best_round_p50']:.1f})" for k in keys]
        print(f"| {name} | {' | '.join(row)} | {r['encode_per_frame'][0]:.0f} | {r['propagation']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "threads": args.threads,
                                               "load": [load_before, load_after]}, indent=2))


if __name__ == "__main__":
    main()
