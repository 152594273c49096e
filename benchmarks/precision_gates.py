"""The documented accuracy gates of each inference precision on a trained run's test split (docs/performance.md):
label-map pixels equal to fp32's (gate >= 99 %), per-class test Dice against fp32's (gate: within 0.5 points)
and the logits' correlation with fp32's (gate >= 0.999), from samfx.deploy.precision.gate_table.

    python benchmarks/precision_gates.py runs/demo [--split test] [--limit N] [--precisions bf16 int8]

`make demo`'s run is the documented one. Images come from the run's own data source, resized as
`samfx eval` does (ImageDataset); batches of 8; CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--precisions", nargs="+", default=["bf16", "int8"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from samfx import api
    from samfx.contracts.plugins import get_registry
    from samfx.data.datasets import ImageDataset
    from samfx.deploy.precision import gate_table
    from samfx.engine.run.loaders import store_path

    run = api.load_run(args.run, device="cpu")
    store = store_path(run.recipe.config["data"]["source"], get_registry(), "data.source")
    ds = ImageDataset(store, args.split, run.model.image_size)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    items = [ds[i] for i in range(n)]
    images = torch.stack([torch.as_tensor(it["image"]) for it in items]).float()   # as eval's to_device
    labels = torch.stack([torch.as_tensor(it["label"]).long() for it in items])
    rows = gate_table(run.model, images, labels, run.classes, run.prompt, tuple(args.precisions))
    names = dict(zip(run.classes, run.class_names))
    print(f"{args.run} on '{args.split}' ({n} images), load average {os.getloadavg()[0]:.2f}\n")
    print("| precision | label pixels = fp32 | logit corr | " + " | ".join(f"Dice {names[c]}" for c in run.classes)
          + " | max |ΔDice| (points) |")
    print("|---|---|---|" + "---|" * len(run.classes) + "---|")
    for p, r in rows.items():
        dice = " | ".join(f"{r['dice'][c]:.2f}" for c in run.classes)
        print(f"| {p} | {r['agree']:.2%} | {r['corr']:.5f} | {dice} | {r.get('dice_delta', 0.0):.2f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2, default=str))
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
