"""SAMUS vit_b automatic inference on the CPU: a baseline fp32 forward against samfx at each precision,
side by side in one process, interleaved round by round (docs/performance.md, "CPU inference").

    OMP_WAIT_POLICY=PASSIVE python benchmarks/cpu_vs_authors.py [PATH] --repeat 3 --out cpu_vs_authors.json

The baseline (first column of every ratio), one of:
  * PATH given: a checkout of the SAMUS / AutoSAMUS authors' repository that you cloned yourself (samfx
    does not ship their code). Their `samus_model_registry["vit_b"]` model is built from PATH, the same
    random weights are written in their layout (`samfx convert --to authors`'s export) and loaded into it,
    and timed as their SAMUS with one click per image (their decoder is SAM's; the click costs nothing
    next to the encoder; samfx's APG is a few % of a forward, so the ratio slightly favours them). Its
    `logit corr` / `mask agree` columns then compare a click model with an automatic one: ignore them.
    Not run while this script was written: there was no network to clone it.
  * PATH absent (default, `--baseline reference`): the authors' computation rebuilt offline the way
    tests/test_interop_autosamus.py checks parity against it: the SAMUS encoder on segment-anything's own
    forward code (`fast_attention=false`, the reference path), the authors' APG and feature adapter
    (tests/authors_autosamus.py, their module layout) and segment-anything's MaskDecoder called one image
    at a time as their forward does. Its logits equal samfx fp32's (checked, printed as `corr`).
  * `--baseline samfx-fp32`: samfx's own eager fp32 (then the ratios are samfx's precisions against it).

samfx: recipes/autosamus.yaml (SAMUS vit_b 256² + APG, form=reference) with random weights (seed 0),
`predict_classes` as `samfx predict` runs it, at each `--precisions` (prepared by
samfx.deploy.precision, gate-checked against fp32). Each round times every path once per batch, in order; after one
untimed warm-up call per path and batch. Prints per (batch, path): median s/batch over the rounds,
spread (min-max), img/s, ratio to the baseline, logit correlation with the baseline, and the load average
before/after. `onnx-fp32` / `onnx-int8`: the graph of `samfx export` (`--quantize int8`) in
onnxruntime (exported once, ~2 min). Threads: `--threads` (default 2) for torch and onnxruntime; set
OMP_WAIT_POLICY=PASSIVE on a shared machine (it is read at start and printed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "autosamus.yaml"
OVERRIDES = ["model.prompt.form=reference"]


def build_samfx(extra: list[str] | None = None) -> Any:
    import torch

    from samfx import api

    rec = api.load_recipe(RECIPE, [*OVERRIDES, *(extra or [])])
    torch.manual_seed(0)
    return api.build_model(rec, load_checkpoint=False).eval()


def reference_baseline(model: Any) -> Callable[[Any], Any]:
    """The authors' AutoSAMUS forward rebuilt offline (tests/authors_autosamus.py), same weights as `model`."""
    import torch
    import torch.nn.functional as F
    from segment_anything.modeling import MaskDecoder, TwoWayTransformer

    sys.path.insert(0, str(ROOT))
    from samfx.deploy.convert import export_state
    from tests.authors_autosamus import AuthorsAPG

    state = export_state(model, "authors")
    ref = build_samfx(["model.image_encoder.fast_attention=false"])
    ref.load_state_dict(model.state_dict())
    apg = AuthorsAPG(256)
    apg.load_state_dict({k: v for k, v in state.items() if k.startswith(("prompt_generator.", "feature_adapter."))})
    dec = MaskDecoder(transformer_dim=256, transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                                          num_heads=8))
    dec.load_state_dict({k[len("mask_decoder."):]: v for k, v in state.items() if k.startswith("mask_decoder.")})
    apg, dec = apg.eval(), dec.eval()
    pe = ref.prompt_encoder.get_dense_pe()

    @torch.no_grad()
    def run(x: Any) -> Any:
        emb = ref.image_encoder(x).embedding
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight]).expand(len(x), -1, -1)
        new_emb, sparse = apg.prompt_generator(emb, tokens)
        dense = apg.feature_adapter(new_emb)
        low = torch.cat([dec.predict_masks(new_emb[i:i + 1], pe, sparse[i:i + 1], dense[i:i + 1])[0][:, :1]
                         for i in range(len(x))])
        return F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return run


def authors_baseline(path: Path, model: Any) -> Callable[[Any], Any]:
    """Their SAMUS from a checkout at `path` (models/segment_anything_samus), samfx's weights in their
    layout, one click per image (the image centre). Best effort: their module path is the published one."""
    import torch

    from samfx.deploy.convert import export_state

    sys.path.insert(0, str(path))
    try:
        from models.segment_anything_samus.build_sam_us import samus_model_registry  # type: ignore
    except ImportError as exc:
        raise SystemExit(f"{path}: no SAMUS authors' code there ({exc}); clone their repository, or leave "
                         f"PATH out for the offline reference baseline") from None
    args = argparse.Namespace(encoder_input_size=256, low_image_size=128, modelname="SAMUS", vit_name="vit_b",
                              sam_ckpt=None)
    theirs = samus_model_registry["vit_b"](args=args, checkpoint=None).eval()
    state = export_state(model, "authors")
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    print(f"# their model: {len(missing)} weights not in samfx's export, {len(unexpected)} unused", flush=True)

    @torch.no_grad()
    def run(x: Any) -> Any:
        n, s = x.shape[0], x.shape[-1]
        pt = (torch.full((n, 1, 2), s / 2.0), torch.ones(n, 1, dtype=torch.int))
        return theirs(x, pt)["masks"]
    return run


def samfx_paths(model: Any, precisions: list[str]) -> dict[str, Callable[[Any], Any]]:

    from samfx.deploy.precision import autocast_of, prepare
    from samfx.engine.eval.inference import predict_classes

    paths: dict[str, Callable[[Any], Any]] = {}
    for p in precisions:
        if p.startswith("onnx"):
            paths[f"samfx {p}"] = onnx_path(model, p)
            continue
        low, gate = prepare(model, p, [1], None, what="SAMUS vit_b (random weights)")
        if gate is not None:
            print(f"# gate {p}: corr {gate.corr:.6f}, label agreement {gate.agree:.4%}", flush=True)

        def run(x: Any, m: Any = low, amp: str = autocast_of(p)) -> Any:
            return predict_classes(m, x, [1], precision=amp).logits
        paths[f"samfx {p}"] = run
    return paths


def onnx_path(model: Any, name: str) -> Callable[[Any], Any]:
    """The automatic model exported (opset 18) and, for onnx-int8, quantised as `samfx export --quantize int8`."""
    import tempfile

    import torch

    from samfx.deploy.export_onnx import export_model
    from samfx.deploy.onnx_runtime import OnnxModel
    from samfx.deploy.quantize import quantize_onnx
    from samfx.model.build import build_model  # noqa: F401  (export_model needs the registry loaded)

    folder = Path(tempfile.mkdtemp(prefix="samfx_cpu_bench_"))
    path = folder / "fp32.onnx"
    t = time.perf_counter()
    export_model(model, _recipe(), path)
    if name == "onnx-int8":
        path = quantize_onnx(path, folder / "int8.onnx")
    print(f"# {name}: exported in {time.perf_counter() - t:.0f} s to {path}", flush=True)
    runner = OnnxModel.load(path, threads=torch.get_num_threads())
    shutil.rmtree(folder)   # the session holds the graph
    return lambda x: torch.from_numpy(runner.run(x.numpy())[0])


def _recipe() -> Any:
    from samfx import api

    return api.load_recipe(RECIPE, OVERRIDES)


def measure(paths: dict[str, Callable[[Any], Any]], batches: list[int], repeat: int, size: int) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(0)
    inputs = {b: torch.rand(b, 3, size, size, generator=g) for b in batches}
    outs: dict[tuple[int, str], Any] = {}
    for b in batches:
        for name, fn in paths.items():   # warm-up (and torch.compile), untimed
            t = time.perf_counter()
            outs[b, name] = fn(inputs[b]).float()
            print(f"# warm-up {name} batch {b}: {time.perf_counter() - t:.1f} s, load {os.getloadavg()[0]:.2f}",
                  flush=True)
    times: dict[tuple[int, str], list[float]] = {k: [] for k in outs}
    loads: list[float] = []
    for r in range(repeat):
        for b in batches:
            for name, fn in paths.items():
                loads.append(os.getloadavg()[0])
                t = time.perf_counter()
                fn(inputs[b])
                times[b, name].append(time.perf_counter() - t)
        print(f"# round {r + 1}/{repeat} done, load {os.getloadavg()[0]:.2f}", flush=True)
    base = next(iter(paths))
    rows = []
    for b in batches:
        ref = statistics.median(times[b, base])
        for name in paths:
            t = times[b, name]
            a, o = outs[b, base].flatten().double(), outs[b, name].flatten().double()
            corr = float(torch.corrcoef(torch.stack([a, o]))[0, 1])
            rows.append({"batch": b, "path": name, "median_s": statistics.median(t), "min_s": min(t),
                         "max_s": max(t), "img_s": b / statistics.median(t), "ratio": ref / statistics.median(t),
                         "corr": corr, "label_agree": float(((a > 0) == (o > 0)).double().mean()),
                         "times": t, "load_during": [min(loads), max(loads)]})
    return rows


def profile(paths: dict[str, Callable[[Any], Any]], size: int, rows: int = 8) -> None:
    """torch.profiler's top ops (self CPU time) of one batch-1 call per path, after the timed rounds."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    for name, fn in paths.items():
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            fn(x)
        print(f"\n{name}, batch 1, load {os.getloadavg()[0]:.2f}:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=44))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", type=Path, help="the SAMUS authors' repository checkout (optional)")
    ap.add_argument("--baseline", choices=["reference", "samfx-fp32"], default="reference",
                    help="baseline when PATH is absent")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8", "int8-bf16"],
                    choices=["fp32", "bf16", "int8", "int8-bf16", "onnx-fp32", "onnx-int8"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    ap.add_argument("--profile", action="store_true", help="then print torch.profiler's top ops per path")
    args = ap.parse_args(argv)

    import torch

    from samfx.engine.bench.cpu import cpu_info

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    info = {"cpu": cpu_info(), "torch": torch.__version__, "threads": args.threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: spin)"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_before": load0}
    print(f"# {json.dumps(info)}", flush=True)
    model = build_samfx()
    if args.path is not None:
        paths = {"authors fp32": authors_baseline(args.path, model)}
    elif args.baseline == "reference":
        paths = {"reference fp32": reference_baseline(model)}
    else:
        paths = {}
    wanted = list(args.precisions)
    if not paths and "fp32" in wanted:   # samfx fp32 is the baseline: first
        wanted.remove("fp32")
    paths.update(samfx_paths(model, ["fp32", *wanted] if not paths else wanted))
    rows = measure(paths, args.batches, args.repeat, model.image_size)
    info["load_after"] = os.getloadavg()
    print(f"\nCPU: {info['cpu']['model']} ({info['cpu']['torch_capability']}), torch {torch.__version__}, "
          f"{args.threads} threads, OMP_WAIT_POLICY={info['omp_wait_policy']}, {args.repeat} rounds")
    print(f"load average before {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, after "
          f"{info['load_after'][0]:.2f} / {info['load_after'][1]:.2f} / {info['load_after'][2]:.2f}\n")
    print("| batch | path | median s/batch | spread (min-max) s | img/s | vs baseline | logit corr | "
          "mask agree |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['path']} | {r['median_s']:.3f} | {r['min_s']:.3f}-{r['max_s']:.3f} | "
              f"{r['img_s']:.2f} | {r['ratio']:.2f}x | {r['corr']:.5f} | {r['label_agree']:.2%} |")
    if args.out:
        args.out.write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    if args.profile:
        profile(paths, model.image_size)
    return rows


if __name__ == "__main__":
    main()
