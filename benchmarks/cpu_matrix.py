"""Training-step time of one recipe stage on CPU for fp32/bf16 x threads x eager/compiled, interleaved.

On a shared machine the load drifts during a run, so separate `samfx bench` runs of each setting are
not comparable. This builds the model once and, round after round, runs one training step of every
setting in turn; each setting's median over the rounds is reported with the load average. Compiling
(once per precision, before the rounds) takes minutes on a 2-core CPU.

    python benchmarks/cpu_matrix.py recipes/autosamus_msff_quick.yaml --rounds 5 --out matrix.json
    python benchmarks/cpu_matrix.py recipes/samus.yaml --batch 2 --threads 2 --precision fp32 --no-compile \
        --reference --rounds 3         # SAMUS vit_b: fast path vs segment-anything's modules
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("overrides", nargs="*", help="key.path=value recipe overrides")
    ap.add_argument("--stage", default="0", help="training stage name or index (default 0)")
    ap.add_argument("--batch", type=int, default=None, help="images per step (default data.batch_size)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--reference", action="store_true",
                    help="also the reference path (fast_attention=false, same weights), eager")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    args = ap.parse_args(argv)

    from samfx.config.recipe import load_recipe
    from samfx.contracts.interfaces import BuildContext
    from samfx.contracts.plugins import get_registry
    from samfx.engine.bench.run import synthetic_labels
    from samfx.engine.train.optim import build_optimizer
    from samfx.engine.train.steps import ImageStep
    from samfx.model.build import build_component, build_model
    from samfx.model.trainable import apply_stage

    registry = get_registry()
    recipe = load_recipe(args.recipe, args.overrides, registry)
    cfg = recipe.typed
    names = [s.name for s in cfg.train.stages]
    index = names.index(args.stage) if args.stage in names else int(args.stage)
    classes = list(cfg.data.classes)
    batch = args.batch or cfg.data.batch_size
    torch.manual_seed(0)
    model = build_model(recipe, registry, load_checkpoint=False)
    apply_stage(model, recipe, index)
    model.train()
    size = model.image_size
    loss_fn = build_component(registry, "loss", cfg.train.stages[index].loss,
                              BuildContext(image_size=size, num_classes=len(classes)), "loss")
    step_mod = ImageStep(model, classes, loss_fn)
    opt_cfg = cfg.train.stages[index].optimizer
    opts = {"eager": build_optimizer([p for p in model.parameters() if p.requires_grad], opt_cfg, "optimizer")}
    opts["compiled"] = opts["eager"]
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(batch, 3, size, size, generator=gen), synthetic_labels(batch, size, classes, gen)

    fns = {("eager", p): step_mod for p in args.precision}
    if args.reference:
        ref_recipe = load_recipe(args.recipe, [*args.overrides, "model.image_encoder.fast_attention=false"], registry)
        ref = build_model(ref_recipe, registry, load_checkpoint=False)
        ref.load_state_dict(model.state_dict())
        apply_stage(ref, ref_recipe, index)
        ref.train()
        opts["reference"] = build_optimizer([p for p in ref.parameters() if p.requires_grad], opt_cfg, "optimizer")
        fns.update({("reference", p): ImageStep(ref, classes, loss_fn) for p in args.precision})
    compile_s: dict[str, float] = {}
    if not args.no_compile:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.dynamic_threads = True   # kernels follow torch.set_num_threads (else fixed at compile)
        compiled = torch.compile(step_mod, dynamic=False)
        for p in args.precision:
            fns[("compiled", p)] = compiled
    settings = [(m, p, t) for (m, p) in fns for t in args.threads]

    def step(mode: str, precision: str) -> None:
        dtype = torch.bfloat16 if precision == "bf16" else None
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss, _ = fns[(mode, precision)](images, labels)
        loss.backward()
        opts[mode].step()
        opts[mode].zero_grad(set_to_none=True)

    for mode, p in fns:   # warm-up; compiles here
        t0 = time.perf_counter()
        step(mode, p)
        if mode == "compiled":
            compile_s[p] = time.perf_counter() - t0
            print(f"compiled {p}: first step {compile_s[p]:.0f}s", file=sys.stderr)
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    loads = []
    for r in range(args.rounds):
        for mode, p, t in settings:
            torch.set_num_threads(t)
            t0 = time.perf_counter()
            step(mode, p)
            times[(mode, p, t)].append((time.perf_counter() - t0) * 1000)
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds} load {loads[-1]:.1f}", file=sys.stderr)
    rows = [{"mode": m, "precision": p, "threads": t, "batch": batch, "median_ms": statistics.median(v),
             "min_ms": min(v), "img_per_s": batch * 1000 / statistics.median(v), "steps_ms": v}
            for (m, p, t), v in times.items()]
    report = {"recipe": args.recipe, "overrides": args.overrides, "stage": names[index], "batch": batch,
              "rounds": args.rounds, "torch": torch.__version__, "load_avg": loads, "compile_s": compile_s,
              "rows": sorted(rows, key=lambda r: r["median_ms"])}
    print(f"{args.recipe} stage {names[index]}, batch {batch}, {args.rounds} rounds, "
          f"load {min(loads):.1f}-{max(loads):.1f}")
    print("| mode | precision | threads | median ms | min ms | img/s |\n|---|---|---|---|---|---|")
    for r in report["rows"]:
        print(f"| {r['mode']} | {r['precision']} | {r['threads']} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | "
              f"{r['img_per_s']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
