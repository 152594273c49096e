"""Markdown table of `samfx bench --out` JSON reports (one row per configuration); with --targets also
the SAMUS vit_b targets of docs/performance.md against the best rows.

    python benchmarks/summarize.py benchmarks/results/cpu/*.json
    python benchmarks/summarize.py --targets benchmarks/results/gpu/*.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(paths: list[str]) -> list[str]:
    out = ["| report | overrides | device | mode | stage | compiled | precision | batch | img/s | mean ms | "
           "min ms | first s | peak GiB | load | note |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        rep = json.loads(Path(path).read_text())
        info = rep["info"]
        over = " ".join(o for o in info["overrides"]) or "-"
        for r in rep["results"]:
            out.append(f"| {Path(path).stem} | {over} | {info['device']} | {r['mode']} | {r['stage']} | "
                       f"{'yes' if r['compiled'] else 'no'} | {r['precision']} | {r['batch']} | "
                       f"{r['img_per_s']:.2f} | {r['step_ms']:.0f} | {r['step_ms_min']:.0f} | "
                       f"{r['first_step_s']:.1f} | {r['peak_mem_gib']:.2f} | {r['load_avg']:.1f} | {r['error']} |")
    return out


# SAMUS vit_b 256²: the authors' code on an H200 as reported for it, and samfx's targets (docs/performance.md).
REFERENCE = {"train": 76.0, "train_gib": 12.0, "infer": 279.0, "autosamus_train": 114.0}
TARGETS = {"train": 300.0, "train_gib": 4.0, "infer": 1000.0}


def targets(paths: list[str]) -> list[str]:
    train, infer, apg = [], [], []
    for path in paths:
        rep = json.loads(Path(path).read_text())
        info = rep["info"]
        if not info["recipe"].endswith("samus.yaml") or info.get("fast_attention") is False:
            continue
        for r in rep["results"]:
            if r["error"] or r["img_per_s"] <= 0:
                continue
            r = dict(r, report=Path(path).stem, device=info["device"])
            if info["recipe"].endswith("autosamus.yaml"):
                if r["mode"] == "train" and r["stage"] == "apg" and r["batch"] == 8:
                    apg.append(r)
            elif r["mode"] == "train" and r["batch"] == 8:
                train.append(r)
            elif r["mode"] == "infer" and r["batch"] == 32:
                infer.append(r)

    def line(what: str, rows: list[dict], target: float | None, ref: float, mem: float | None = None) -> str:
        if not rows:
            return f"- {what}: no successful row"
        best = max(rows, key=lambda r: r["img_per_s"])
        cfg = f"{best['report']}, {'compiled' if best['compiled'] else 'eager'} {best['precision']}"
        met = "" if target is None else (" - target met" if best["img_per_s"] >= target and
                                         (mem is None or best["peak_mem_gib"] <= mem) else " - target NOT met")
        return (f"- {what}: {best['img_per_s']:.0f} img/s at {best['peak_mem_gib']:.2f} GiB "
                f"(batch {best['batch']}, {cfg}; {best['device']}); "
                f"{best['img_per_s'] / ref:.1f}x the authors' {ref:.0f} img/s on an H200{met}")

    out = ["", "Targets (SAMUS vit_b 256²; the authors' code on an H200: train 76 img/s at 12.0 GiB, "
               "inference 279 img/s):",
           line("train batch 8, fastest", train, None, REFERENCE["train"]),
           line("train batch 8, fastest within 4 GiB (target >= 300 img/s)",
                [r for r in train if r["peak_mem_gib"] <= TARGETS["train_gib"]], TARGETS["train"], REFERENCE["train"],
                TARGETS["train_gib"]),
           line("inference batch 32 (target >= 1000 img/s)", infer, TARGETS["infer"], REFERENCE["infer"]),
           line("AutoSAMUS APG stage, train batch 8", apg, None, REFERENCE["autosamus_train"])]
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    with_targets = "--targets" in args
    args = [a for a in args if a != "--targets"]
    if not args:
        sys.exit("usage: python benchmarks/summarize.py [--targets] REPORT.json [...]")
    print("\n".join(rows(args) + (targets(args) if with_targets else [])))
