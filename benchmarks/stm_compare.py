"""With vs without space-time memory: per-frame Dice, LV-area jitter and EF error, over seeds.

For each seed, trains the same recipe twice with samfx's Trainer on clips of the synthetic sequences
(``data.clip_length > 0``: loss over every labeled frame) - once as written (with ``model.temporal``),
once with ``model.temporal=null`` (each frame on its own, same prompt) - and evaluates both (last
weights) on the test split's whole sequences through ``forward_clip`` (fully automatic with the APG
recipe). Training is one stage ``e2e`` (``--trainable``, Adam, ``--loss`` + ``--area-change-weight``,
``--steps`` steps); ``--init CKPT`` starts both variants from a trained per-frame model, and with
``--trainable temporal`` (only the memory trains) "no memory" is that model unchanged. Metrics: mean
per-frame Dice of each class on labeled frames; jitter = mean |dA_pred - dA_true| of the LV area
between consecutive frames (mm^2), split into the LV-area gain (slope of predicted against true area:
below 1 the curve is damped) and the residual jitter around that fit (noise); EF MAE of the
single-plane area-length EF of predicted masks against that of the ground-truth masks.

    python benchmarks/stm_compare.py --steps 40 --json /tmp/stm_compare.json      # tiny, CPU
    # from the make demo checkpoint: the command and table in docs/temporal.md
    python benchmarks/stm_compare.py --size vit_b --image-size 256 --steps 2000 --classes 1 2 3 \\
        --override model.checkpoint=~/checkpoints/sam_vit_b_01ec64.pth --device cuda
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
NAMES = {1: "LV", 2: "MYO", 3: "LA"}


def run_one(args: argparse.Namespace, seed: int, memory: bool, out_dir: Path) -> dict:
    """Train one variant with samfx's Trainer (clip path), then evaluate the test sequences."""
    from samfx.data.datasets import SequenceDataset
    from samfx.engine.clips import evaluate_sequences
    from samfx.engine.data import store_path
    from samfx.engine.trainer import Trainer
    from samfx.pluginmanager import get_registry
    from samfx.recipe import load_recipe

    reg = get_registry()
    trainable = [e for e in args.trainable if memory or e != "temporal"]
    stage = {"name": "e2e", "trainable": trainable, "epochs": 100000, "max_steps": args.steps,
             "optimizer": {"name": "adam", "lr": args.lr}, "loss": {"name": args.loss},
             "area_change_weight": args.area_change_weight,
             "select_metric": "train/loss"}
    if args.prompt:
        stage["prompt"] = {"name": args.prompt}
    source = {"name": "synthetic_echo", "patients": args.patients, "seed": 0, "frames": args.frames,
              "size": list(args.frame_size), "wall_flicker": args.wall_flicker}
    overrides = [f"model.image_encoder.size={args.size}", f"model.image_encoder.image_size={args.image_size}",
                 f"data.classes={args.classes}", f"data.class_names={[NAMES.get(c, str(c)) for c in args.classes]}",
                 f"data.clip_length={args.clip_length}", f"data.batch_size={args.batch}", f"data.source={source}",
                 f"train.seed={seed}", f"train.device={args.device}", "train.val_every=100000",
                 "eval.overlays=0", f"train.stages={[stage]}", *args.override]
    if args.init:
        overrides.append(f"model.checkpoint={args.init}")
    if not memory:
        overrides.append("model.temporal=null")
    recipe = load_recipe(args.recipe, overrides, registry=reg)
    run_dir = out_dir / f"seed{seed}-{'memory' if memory else 'nomemory'}"
    t0 = time.time()
    if trainable and not args.eval_existing:
        trainer = Trainer(recipe, run_dir, registry=reg, quiet=True)
        metrics = trainer.fit()
        model, device = trainer.model, trainer.device
        steps, last_loss = metrics["global_step"], metrics["last"].get("train/loss")
    else:
        # --eval-existing: the last.pt of a finished run of this folder (e.g. after a metric was added);
        # nothing trainable (--trainable temporal, "no memory" arm): the --init model as it is
        if trainable:
            last = run_dir / "last.pt"
            if not last.is_file():
                raise SystemExit(f"--eval-existing: {last} does not exist; run without --eval-existing first")
            recipe = load_recipe(args.recipe, [*overrides, f"model.checkpoint={last}"], registry=reg)  # last wins
        model, device = frozen_model(recipe, reg, args.device)
        steps, last_loss = None if trainable else 0, None
    train_s = time.time() - t0
    store = store_path(recipe.config["data"]["source"], reg)
    test = SequenceDataset(store, "test", model.image_size)
    res = evaluate_sequences(model, test, list(args.classes), device, limit=args.eval_sequences)
    res["summary"].update(seed=seed, memory=memory, train_s=round(train_s, 1), steps=steps,
                          trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                          last_train_loss=last_loss, run=str(run_dir))
    if memory and args.memory_check:
        res["summary"]["memory_check"] = memory_check(model, test, args, device)
    return res


class _WrittenMasks:
    """Test-time swap of what the memory stores: every ``temporal.write`` gets the ground-truth masks
    (``truth``) or empty masks (``empty``) of the sequence being evaluated instead of the prediction.
    Wraps the dataset so that fetching a sequence queues its per-frame class masks."""

    def __init__(self, model, dataset, classes: list[int], mode: str):
        self.dataset, self.classes, self.mode, self.queue = dataset, classes, mode, []
        self.write = model.temporal.write

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        from samfx.model import class_targets

        item = self.dataset[i]
        cls = torch.tensor(self.classes)
        self.queue = [class_targets(frame[None].long(), cls) for frame in item["labels"]]   # (K,1,S,S) each
        return item

    def __call__(self, state, features, decoded, frame):
        from dataclasses import replace

        masks = self.queue.pop(0).to(decoded.low_res)
        if self.mode == "empty":
            masks = torch.zeros_like(masks)
        # the masks as the decoder's low-res logits (the memory stores their sigmoid)
        pooled = torch.nn.functional.interpolate(masks, size=decoded.low_res.shape[-2:], mode="area")
        low = torch.logit(pooled.clamp(1e-6, 1 - 1e-6))
        return self.write(state, features, replace(decoded, low_res=low), frame)


def memory_check(model, test, args, device) -> dict:
    """Does the trained memory use what it stores? Mean Dice / jitter with ground-truth and with empty
    masks written instead of the predictions (a memory whose results do not move ignores its contents)."""
    from samfx.engine.clips import evaluate_sequences

    out = {}
    for mode in ("truth", "empty"):
        swap = _WrittenMasks(model, test, list(args.classes), mode)
        model.temporal.write = swap
        try:
            s = evaluate_sequences(model, swap, list(args.classes), device, limit=args.eval_sequences)["summary"]
        finally:
            del model.temporal.write          # back to the class method
        out[mode] = {k: round(s[k], 4) for k in s if k.startswith("dice_") or k == "jitter_mm2"}
    return out


def frozen_model(recipe, reg, device_name: str):
    """The recipe's model (``model.checkpoint`` loaded) on the resolved device, gradients off."""
    from samfx.build import build_model
    from samfx.engine.distributed import env_info, resolve_device

    device = resolve_device(device_name, env_info())
    model = build_model(recipe, reg).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, device


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "autosamus_msff_stm.yaml"))
    ap.add_argument("--prompt", default=None, help="a prompt_generator name for the stage (default: model.prompt)")
    ap.add_argument("--trainable", nargs="+",
                    default=["image_encoder", "mask_decoder", "adapters", "prompt", "temporal"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--loss", default="dice_mse")
    ap.add_argument("--area-change-weight", type=float, default=0.0,
                    help="train.stages.0.area_change_weight of both variants")
    ap.add_argument("--out-dir", default="runs/stm_compare")
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--classes", type=int, nargs="+", default=[1])
    ap.add_argument("--clip-length", type=int, default=6)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--frame-size", type=int, nargs=2, default=[128, 144])
    ap.add_argument("--wall-flicker", type=float, default=0.0,
                    help="data.source.wall_flicker of the synthetic sequences (wall dropouts that come and go)")
    ap.add_argument("--eval-sequences", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", default=None,
                    help="start both variants from this checkpoint (e.g. a trained per-frame run's best.pt)")
    ap.add_argument("--arms", nargs="+", choices=["memory", "nomemory"], default=["memory", "nomemory"])
    ap.add_argument("--eval-existing", action="store_true",
                    help="do not train: evaluate the last.pt of each run already in --out-dir")
    ap.add_argument("--override", nargs="*", default=[])
    ap.add_argument("--memory-check", action="store_true",
                    help="also evaluate the memory arm with ground-truth / empty masks written to the memory")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    results = []
    for seed in args.seeds:
        for memory in [arm == "memory" for arm in args.arms]:
            res = run_one(args, seed, memory, out_dir)
            s = res["summary"]
            results.append(res)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}), flush=True)
    table = summarize(results, args.classes)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "table": table}, indent=2,
                                              default=str))
    return 0


def summarize(results: list[dict], classes: list[int]) -> str:
    keys = [f"dice_{c}" for c in classes] + ["jitter_mm2", "lv_area_gain", "jitter_residual_mm2", "ef_mae_vs_gt_masks"]
    lines = ["| variant | seeds | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for memory in (True, False):
        runs = [r["summary"] for r in results if r["summary"]["memory"] == memory]
        if not runs:
            continue
        cells = []
        for k in keys:
            v = np.array([r.get(k, math.nan) for r in runs], dtype=float)
            cells.append(f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}" if np.isfinite(v).any() else "n/a")
        lines.append(f"| {'memory' if memory else 'no memory'} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
