"""Peak inference memory of a temporal model versus clip length: is the memory bank bounded?

Runs ``model.forward_clip`` on random clips of each length in a fresh process and reports the peak:
CUDA ``max_memory_allocated`` on a GPU, else the process's peak RSS (``resource.ru_maxrss``). Each
frame's output is reduced to its foreground area through ``on_frame`` (as a long-video consumer
would), so only the model's working set and its memory bank can grow with T. "delta" is the peak
minus the memory in use just before the forward (model weights and the input clip excluded).
``--unbounded`` adds a run whose bank keeps every frame, to show what the bound prevents.

    python benchmarks/stm_memory.py                       # tiny SAMUS at 128², T = 10 and 100, CPU
    python benchmarks/stm_memory.py --size vit_b --image-size 256 --classes 1 2 3 --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    from samfx.config.recipe import load_recipe
    from samfx.contracts.plugins import get_registry
    from samfx.model.build import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    overrides = [f"model.image_encoder.size={args.size}", f"model.image_encoder.image_size={args.image_size}",
                 f"model.temporal.memory_frames={args.memory_frames}", *args.override]
    # only the model section matters here: components are checked when they are built
    recipe = load_recipe(args.recipe, overrides)
    model = build_model(recipe, get_registry()).to(device).eval()
    if args.prompt:
        model.use_prompt(args.prompt)
    s = model.image_size
    frames = torch.rand(args.batch, args.frames, 3, s, s, device=device)
    labels = torch.randint(0, 4, (args.batch, args.frames, s, s), device=device) if \
        model.prompt_generator.needs_targets else None
    bank = {"frames": 0, "bytes": 0}
    write = model.temporal.write

    def tracked_write(state, features, decoded, frame):
        state = write(state, features, decoded, frame)
        bank["frames"], bank["bytes"] = state.num_frames, state.nbytes()
        return state

    model.temporal.write = tracked_write
    areas: list[float] = []
    on_frame = lambda t, out: areas.append(float((out.logits > 0).sum()))  # noqa: E731
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = _rss_mb()
    with torch.inference_mode():
        model.forward_clip(frames, args.classes, labels, on_frame=on_frame)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        kind = "cuda max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        kind = "peak RSS"
    return {"frames": args.frames, "memory_frames": args.memory_frames, "device": str(device),
            "measure": kind, "before_mb": round(before, 1), "peak_mb": round(peak, 1),
            "delta_mb": round(peak - before, 1), "bank_frames": bank["frames"],
            "bank_mb": round(bank["bytes"] / 2**20, 3), "frames_out": len(areas)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "autosamus_msff_stm.yaml"))
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--classes", type=int, nargs="+", default=[1])
    ap.add_argument("--lengths", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--memory-frames", type=int, default=6)
    ap.add_argument("--unbounded", action="store_true", help="also run with a bank that keeps every frame")
    ap.add_argument("--prompt", default=None, help="prompt generator key (default: the recipe's model.prompt)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--override", nargs="*", default=[], help="extra recipe overrides key=value")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, default=10, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    runs = [(t, args.memory_frames) for t in args.lengths]
    if args.unbounded:
        runs.append((max(args.lengths), max(args.lengths)))
    results = []
    for frames, mem in runs:
        cmd = [sys.executable, __file__, "--child", "--frames", str(frames), "--memory-frames", str(mem),
               "--recipe", args.recipe, "--size", args.size, "--image-size", str(args.image_size),
               "--batch", str(args.batch), "--device", args.device, "--threads", str(args.threads),
               "--classes", *map(str, args.classes), "--override", *args.override]
        if args.prompt:
            cmd += ["--prompt", args.prompt]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "child failed", file=sys.stderr)
            return 1
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"T={res['frames']:4d} memory_frames={mem:4d}  {res['measure']}: peak {res['peak_mb']:8.1f} MiB  "
              f"(before {res['before_mb']:.1f}, delta {res['delta_mb']:.1f})  bank {res['bank_frames']} frames "
              f"{res['bank_mb']:.3f} MiB  [{res['device']}]", flush=True)
    bounded = [r for r in results if r["memory_frames"] == args.memory_frames]
    if len(bounded) >= 2:
        lo, hi = bounded[0], bounded[-1]
        print(f"ratio T={hi['frames']} / T={lo['frames']}: peak {hi['peak_mb'] / lo['peak_mb']:.3f}, "
              f"delta {hi['delta_mb'] / max(lo['delta_mb'], 1e-9):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
