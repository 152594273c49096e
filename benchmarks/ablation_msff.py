"""SAMUS vs SAMUS + MSFF on synthetic echo: same data, same seeds, N seeds each.

    python benchmarks/ablation_msff.py --seeds 0 1 2 --out runs/ablation_msff [k=v ...]

Trains recipes/samus_quick.yaml and recipes/samus_msff_quick.yaml once per seed (train.seed), evaluates
each best checkpoint on the test split with the same deterministic clicks, and prints a markdown table
(mean ± std over seeds of the per-image means) that docs/main_job.md quotes. Extra k=v arguments are
passed to every training run (e.g. train.stages.0.epochs=2 for a quicker check).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ARMS = {"SAMUS": "recipes/samus_quick.yaml", "SAMUS + MSFF": "recipes/samus_msff_quick.yaml"}
METRICS = ("dice", "hd95")


def run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/ablation_msff")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    samfx = [sys.executable, "-m", "samfx.cli.main"]
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        for arm, recipe in ARMS.items():
            out = Path(args.out) / f"{Path(recipe).stem}-seed{seed}"
            t0 = time.time()
            if not (out / "best.pt").exists():
                run([*samfx, "train", recipe, f"train.seed={seed}", *args.overrides, "--out", str(out)])
            report = json.loads(run([*samfx, "eval", str(out), "--json"]))
            report["train_seconds"] = time.time() - t0
            results[arm].append(report)
            print(f"{arm} seed {seed}: mean Dice {report['mean']['dice']:.4f}", file=sys.stderr)
    classes = results[next(iter(ARMS))][0]["classes"]
    unit = results[next(iter(ARMS))][0]["distance_unit"]
    header = "| model | " + " | ".join(f"{c} Dice" for c in classes) + " | " + \
             " | ".join(f"{c} HD95 ({unit})" for c in classes) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(classes)))
    for arm, reports in results.items():
        cells = []
        for metric in METRICS:
            for c in classes:
                vals = [r["per_image"][c][metric]["mean"] for r in reports]
                vals = [v for v in vals if v is not None]
                sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}" if vals else "n/a")
        print(f"| {arm} | " + " | ".join(cells) + " |")
    print(f"\n{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}); mean ± population std over seeds "
          f"of each run's per-image mean on the test split.")
    (Path(args.out) / "ablation.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
