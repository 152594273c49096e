"""The temporal benchmark: temporal modules against the per-frame model under four protocols, over seeds.

Arms (each fine-tuned on clips of the synthetic sequences with samfx's Trainer, the same stage for every
arm: ``--trainable`` (entries an arm lacks are dropped), Adam at ``--lr``, ``--loss`` +
``--area-change-weight`` × area change, ``--steps`` steps, the same data order):

- ``perframe``: ``--recipe`` (SAMUS + MSFF + APG + stm) with ``model.temporal=null``, from ``--init``;
- ``stm``: ``--recipe`` as written (the space-time memory), from ``--init``;
- ``prev_mask``: the per-frame model tracking by prompting: frame 0 by the protocol's prompt, every later
  frame by the previous frame's mask logits (the ``prev_mask`` generator; semi protocols only);
- ``stm_prev_mask``: ``stm`` with the same prompting;
- ``sam2_perframe``: ``--sam2-recipe`` (SAM2.1 hiera tiny + APG + sam2_memory) with ``model.temporal=null``
  and the encoder in image mode, from ``--sam2-init``;
- ``sam2_memory``: ``--sam2-recipe`` as written (SAM2's memory), from ``--sam2-init`` (the loader gives its
  image-mode ``no_mem_embed`` to the memory, as for an official SAM2 file).
  ``memory`` / ``nomemory`` are the first two under their former names.

Protocols (``--protocol``): ``auto`` - the APG prompts every frame, every labeled frame in the loss;
``semi`` - a simulated click per class on frame 0 only, nothing after (SAM2's and MemSAM's protocol), in
training and at test; ``semi_mask`` - as ``semi`` but frame 0's masks are given (the ``masks`` prompt:
they are frame 0's output and what the memory stores first; frame 0 is not scored, as in video object
segmentation benchmarks); ``sparse`` - as ``auto`` but training sees only the ED and ES labels
(``data.clip_labels: ed_es``, CAMUS's full sequences). Every arm is then evaluated on the same held-out
sequences (``evaluate_sequences``): per class Dice and HD95 on every labeled frame and at ED/ES; the
LV-area jitter (mean |dA_pred - dA_true| between consecutive frames, mm^2) split into the LV-area gain
(slope of predicted against true area: below 1 the curve is damped) and the residual around that fit;
the EF error of the single-plane area-length EF of predicted masks against that of the ground-truth
masks; the forward time per frame.

    python benchmarks/stm_compare.py --steps 40 --json /tmp/stm_compare.json      # tiny, from scratch, CPU
    # the docs/temporal.md table: its command there (starts from trained per-frame runs)
    python benchmarks/stm_compare.py --merge a.json b.json                          # one table from parts
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
ALIASES = {"memory": "stm", "nomemory": "perframe"}
ARMS = ("perframe", "stm", "prev_mask", "stm_prev_mask", "sam2_perframe", "sam2_memory")
TRACKING = ("prev_mask", "stm_prev_mask")   # frame 0 by the protocol's prompt, later frames by prev_mask
PROTOCOLS = ("auto", "semi", "semi_mask", "sparse")
SEMI = {"semi": {"name": "clicks", "positive": 1}, "semi_mask": {"name": "masks"}}  # their frame-0 prompt


def arm_overrides(args: argparse.Namespace, arm: str) -> tuple[str, list[str]]:
    """(recipe, overrides) that make `arm` out of the recipes and starting checkpoints."""
    sam2 = arm.startswith("sam2")
    recipe, init = (args.sam2_recipe, args.sam2_init) if sam2 else (args.recipe, args.init)
    extra = [f"model.image_encoder.image_size={args.image_size}"]
    extra += list(args.sam2_override) if sam2 else [f"model.image_encoder.size={args.size}", *args.override]
    if arm in ("perframe", "sam2_perframe", "prev_mask"):
        extra.append("model.temporal=null")
    if arm == "sam2_perframe":
        extra.append("model.image_encoder.no_memory_embed=true")
    if init:
        extra.append(f"model.checkpoint={init}")
    return recipe, extra


def stage_and_data(args: argparse.Namespace, arm: str, protocol: str, seed: int) -> list[str]:
    """The overrides every arm of `protocol` shares: one clip stage, the synthetic sequences, the seed."""
    trainable = [e for e in args.trainable if arm in ("stm", "stm_prev_mask", "sam2_memory") or e != "temporal"]
    stage = {"name": protocol, "trainable": trainable, "epochs": 100000, "max_steps": args.steps,
             "optimizer": {"name": "adam", "lr": args.lr}, "loss": {"name": args.loss},
             "area_change_weight": args.area_change_weight, "select_metric": "train/loss"}
    if protocol in SEMI and arm in TRACKING:
        first = dict(SEMI[protocol])
        stage["prompt"] = {"name": "prev_mask", "first": first.pop("name"), **first}
    elif protocol in SEMI:
        stage["prompt"] = dict(SEMI[protocol])
    elif arm in TRACKING:
        raise SystemExit(f"arm {arm} tracks from frame 0's prompt: use it with --protocol semi or semi_mask")
    elif args.prompt:
        stage["prompt"] = {"name": args.prompt}
    source = {"name": "synthetic_echo", "patients": args.patients, "seed": 0, "frames": args.frames,
              "size": list(args.frame_size), "version": args.data_version}
    if args.data_version == 1:
        source["wall_flicker"] = args.wall_flicker
    return [f"data.classes={args.classes}", f"data.class_names={[NAMES.get(c, str(c)) for c in args.classes]}",
            f"data.clip_length={args.clip_length}", f"data.batch_size={args.batch}", f"data.source={source}",
            f"data.clip_labels={'ed_es' if protocol == 'sparse' else 'all'}", f"train.seed={seed}",
            f"train.device={args.device}", "train.val_every=100000", "eval.overlays=0", f"train.stages={[stage]}"]


def run_one(args: argparse.Namespace, seed: int, arm: str, protocol: str, out_dir: Path) -> dict:
    """Train one arm under one protocol with samfx's Trainer (clip path), then evaluate the test sequences."""
    from samfx.config.recipe import load_recipe
    from samfx.contracts.plugins import get_registry
    from samfx.data.datasets import SequenceDataset
    from samfx.engine.eval.sequences import evaluate_sequences
    from samfx.engine.run.loaders import open_split, store_path
    from samfx.engine.train.trainer import Trainer
    from samfx.model.build import prompt_key

    reg = get_registry()
    recipe_path, arm_extra = arm_overrides(args, arm)
    overrides = [*stage_and_data(args, arm, protocol, seed), *arm_extra]
    recipe = load_recipe(recipe_path, overrides, registry=reg)
    run_dir = out_dir / f"{protocol}-{arm}-seed{seed}"
    t0 = time.time()
    trainable = recipe.config["train"]["stages"][0]["trainable"]
    if trainable and not args.eval_existing:
        # no validation split: the arms are compared on the test sequences below, and validating whole
        # sequences at the end of the stage would cost as much as the test evaluation
        size = int(recipe.config["model"]["image_encoder"]["image_size"])
        train = open_split(recipe, reg, recipe.config["data"]["train_split"], size, train=True)
        trainer = Trainer(recipe, run_dir, registry=reg, quiet=True, datasets={"train": train, "val": None})
        metrics = trainer.fit()
        model, device = trainer.model, trainer.device
        steps, last_loss = metrics["global_step"], metrics["last"].get("train/loss")
    else:
        # --eval-existing: the last.pt of a finished run of this folder; nothing trainable: the init as it is
        if trainable:
            last = run_dir / "last.pt"
            if not last.is_file():
                raise SystemExit(f"--eval-existing: {last} does not exist; run without --eval-existing first")
            recipe = load_recipe(recipe_path, [*overrides, f"model.checkpoint={last}"], registry=reg)  # last wins
        model, device = frozen_model(recipe, reg, args.device)
        steps, last_loss = None if trainable else 0, None
    train_s = time.time() - t0
    store = store_path(recipe.config["data"]["source"], reg)
    test = SequenceDataset(store, "test", model.image_size)
    prompt = prompt_key(recipe, recipe.config["train"]["stages"][0]["prompt"]) if protocol in SEMI else None
    res = evaluate_sequences(model, test, list(args.classes), device, prompt=prompt, limit=args.eval_sequences)
    res["summary"].update(seed=seed, arm=arm, protocol=protocol, train_s=round(train_s, 1), steps=steps,
                          trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                          last_train_loss=last_loss, run=str(run_dir))
    if arm in ("stm", "stm_prev_mask", "sam2_memory") and args.memory_check:
        res["summary"]["memory_check"] = memory_check(model, test, args, device, prompt)
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
        from samfx.model.outputs import class_targets

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


def memory_check(model, test, args, device, prompt: str | None = None) -> dict:
    """Does the trained memory use what it stores? Mean Dice / jitter with ground-truth and with empty
    masks written instead of the predictions (a memory whose results do not move ignores its contents)."""
    from samfx.engine.eval.sequences import evaluate_sequences

    out = {}
    for mode in ("truth", "empty"):
        swap = _WrittenMasks(model, test, list(args.classes), mode)
        model.temporal.write = swap
        try:
            s = evaluate_sequences(model, swap, list(args.classes), device, prompt=prompt,
                                   limit=args.eval_sequences)["summary"]
        finally:
            del model.temporal.write          # back to the class method
        out[mode] = {k: round(s[k], 4) for k in s if k.startswith("dice_") or k == "jitter_mm2"}
    return out


def frozen_model(recipe, reg, device_name: str):
    """The recipe's model (``model.checkpoint`` loaded) on the resolved device, gradients off."""
    from samfx.engine.run.distributed import env_info, resolve_device
    from samfx.model.build import build_model

    device = resolve_device(device_name, env_info())
    model = build_model(recipe, reg).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "autosamus_msff_stm.yaml"))
    ap.add_argument("--sam2-recipe", default=str(ROOT / "recipes" / "autosam2_video_quick.yaml"))
    ap.add_argument("--init", default=None, help="the SAMUS arms' start (e.g. a trained per-frame run's best.pt)")
    ap.add_argument("--sam2-init", default=None, help="the SAM2 arms' start (e.g. an autosam2_quick run's best.pt)")
    ap.add_argument("--arms", nargs="+", choices=[*ARMS, *ALIASES], default=["stm", "perframe"])
    ap.add_argument("--protocol", nargs="+", choices=PROTOCOLS, default=["auto"])
    ap.add_argument("--prompt", default=None, help="auto/sparse: a prompt_generator name for the stage "
                                                   "(default: model.prompt)")
    ap.add_argument("--trainable", nargs="+",
                    default=["image_encoder", "mask_decoder", "adapters", "prompt", "temporal"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--loss", default="dice_mse")
    ap.add_argument("--area-change-weight", type=float, default=0.0,
                    help="train.stages.0.area_change_weight of every arm")
    ap.add_argument("--out-dir", default="runs/stm_compare")
    ap.add_argument("--classes", type=int, nargs="+", default=[1])
    ap.add_argument("--clip-length", type=int, default=6)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--frame-size", type=int, nargs=2, default=[128, 144])
    ap.add_argument("--data-version", type=int, choices=[1, 2], default=2, help="synthetic echo generator")
    ap.add_argument("--wall-flicker", type=float, default=0.0,
                    help="v1 only: data.source.wall_flicker (wall dropouts that come and go)")
    ap.add_argument("--eval-sequences", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-existing", action="store_true",
                    help="do not train: evaluate the last.pt of each run already in --out-dir")
    ap.add_argument("--size", default="tiny", help="the SAMUS arms' model.image_encoder.size")
    ap.add_argument("--image-size", type=int, default=128, help="model.image_encoder.image_size of every arm")
    ap.add_argument("--override", nargs="*", default=[], help="extra recipe overrides of the SAMUS arms")
    ap.add_argument("--sam2-override", nargs="*", default=[], help="extra recipe overrides of the SAM2 arms")
    ap.add_argument("--memory-check", action="store_true",
                    help="also evaluate memory arms with ground-truth / empty masks written to the memory")
    ap.add_argument("--json", default=None, help="write the runs here (rewritten after every run)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="only print the table of these files")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        runs = [r for f in args.merge for r in json.loads(Path(f).read_text())["runs"]]
        classes = json.loads(Path(args.merge[0]).read_text())["args"]["classes"]
        print(summarize(runs, classes))
        return 0
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    arms = [ALIASES.get(a, a) for a in args.arms]
    results = []
    for seed in args.seeds:
        for protocol in args.protocol:
            for arm in arms:
                res = run_one(args, seed, arm, protocol, out_dir)
                results.append(res)
                s = res["summary"]
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results}, indent=2,
                                                          default=str))
    print(summarize(results, args.classes))
    return 0


def _cell(runs: list[dict], key: str, digits: int, scale: float = 1.0) -> str:
    v = np.array([r.get(key, math.nan) for r in runs], dtype=float) * scale
    return f"{np.nanmean(v):.{digits}f} ± {np.nanstd(v):.{digits}f}" if np.isfinite(v).any() else "n/a"


def _no_hd95_share(run: dict, classes: list[int]) -> float:
    """Share of (labeled frame, class) pairs with no finite HD95 (exactly one of prediction and truth
    empty): the HD95 means leave them out, so a high share makes those means look better than they are."""
    inf = sum(run["summary"].get(f"hd95_inf_frames_{c}", 0) for c in classes)
    frames = sum(row.get("scored_frames", row["frames"]) for row in run.get("sequences", []))
    return inf / (frames * len(classes)) if frames else math.nan


def summarize(results: list[dict], classes: list[int]) -> str:
    """Two markdown tables, one row per (protocol, arm): mean ± population std over seeds."""
    names = [NAMES.get(c, str(c)) for c in classes]
    dice = [("dice", c) for c in classes] + [("dice_edes", c) for c in classes]
    hd = [("hd95", c) for c in classes] + [("hd95_edes", c) for c in classes]
    head1 = [f"{n} Dice" for n in names] + [f"{n} Dice ED/ES" for n in names]
    head2 = ([f"{n} HD95" for n in names] + [f"{n} HD95 ED/ES" for n in names] + ["no HD95 %"]
             + ["LV jitter (mm²)", "gain", "residual (mm²)", "EF MAE", "ms/frame"])
    lines1 = ["| protocol | arm | seeds | " + " | ".join(head1) + " |", "|---" * (len(head1) + 3) + "|"]
    lines2 = ["| protocol | arm | " + " | ".join(head2) + " |", "|---" * (len(head2) + 2) + "|"]
    for protocol in PROTOCOLS:
        for arm in ARMS:
            full = [r for r in results if r["summary"].get("protocol", "auto") == protocol
                    and r["summary"].get("arm", "stm" if r["summary"].get("memory") else "perframe") == arm]
            if not full:
                continue
            runs = [dict(r["summary"], no_hd95=_no_hd95_share(r, classes)) for r in full]
            cells1 = [_cell(runs, f"{k}_{c}", 1, 100.0) for k, c in dice]
            cells2 = [_cell(runs, f"{k}_{c}", 1) for k, c in hd] + [_cell(runs, "no_hd95", 1, 100.0)] + [
                _cell(runs, "jitter_mm2", 1), _cell(runs, "lv_area_gain", 2), _cell(runs, "jitter_residual_mm2", 1),
                _cell(runs, "ef_mae_vs_gt_masks", 1), _cell(runs, "ms_per_frame", 1)]
            lines1.append(f"| {protocol} | {arm} | {len(runs)} | " + " | ".join(cells1) + " |")
            lines2.append(f"| {protocol} | {arm} | " + " | ".join(cells2) + " |")
    return "\n".join(lines1) + "\n\n" + "\n".join(lines2)


if __name__ == "__main__":
    sys.exit(main())
