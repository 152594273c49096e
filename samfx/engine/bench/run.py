"""`samfx bench`: training-step and inference throughput and peak memory of a recipe's model.

Inputs are random images and label maps of the model's input size with one random ellipse per class
(so simulated prompts see mask-like regions); data loading is excluded on purpose (the engine's logs
time it). A training step is what the trainer does per batch: its step module
(``samfx.engine.train.steps.ImageStep``: all classes of each image in one encoder pass, the stage's loss on
fp32 logits), backward, the stage's optimizer as the trainer builds it; an inference step is
``forward_classes`` under ``inference_mode`` with the eval prompt. Each configuration gets untimed
warm-up steps (the first also absorbs ``torch.compile``) and then ``steps`` timed steps with one
device synchronisation at each end.

Memory: on CUDA ``max_memory_allocated`` (and reserved) during the configuration; on CPU the
process RSS sampled every 2 ms, an upper bound (the allocator may keep freed memory), so compare
CPU memory between separate runs. Rows also carry the memory in use when the configuration started.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from samfx.config.recipe import Recipe, load_recipe
from samfx.config.schema import OptimizerSection, StageSection
from samfx.contracts.errors import SamfxError
from samfx.contracts.plugins import get_registry
from samfx.data.files import write_text
from samfx.engine.bench.cpu import cpu_info
from samfx.engine.bench.measure import Memory, profile_steps, sync, timed
from samfx.engine.run.distributed import resolve_device
from samfx.engine.train.optim import build_optimizer
from samfx.engine.train.steps import ImageStep
from samfx.model.build import build_extra, build_model, prompt_key
from samfx.model.trainable import apply_stage, count_params

if TYPE_CHECKING:
    from samfx.model.segmentation import SegmentationModel

SCHEMA = 1
MODES = ("eager", "compiled")
PRECISIONS = ("fp32", "bf16")


@dataclass
class BenchResult:
    mode: str               # train | infer
    stage: str              # training stage (train rows) or prompt generator key (infer rows)
    compiled: bool
    precision: str          # fp32 | bf16
    batch: int              # images per step (each image is queried once per class)
    img_per_s: float        # from the mean step time
    step_ms: float          # mean over the timed steps
    step_ms_min: float      # fastest timed step (least disturbed by other load)
    first_step_s: float     # first untimed step; includes torch.compile when compiled
    peak_mem_gib: float     # CUDA: max allocated; CPU: peak RSS (sampled)
    start_mem_gib: float    # memory in use when this configuration started (model, optimizer state...)
    peak_reserved_gib: float = 0.0   # CUDA caching allocator's reserved peak
    load_avg: float = 0.0            # 1-minute load average after the timed steps (CPU contention)
    profile: str = ""                # profile summary written for this row
    error: str = ""


class InferStep(nn.Module):
    def __init__(self, model: SegmentationModel, classes: list[int]):
        super().__init__()
        self.model, self.classes = model, classes

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        return self.model.forward_classes(images, self.classes, labels)[1].logits


def synthetic_labels(b: int, size: int, classes: list[int], gen: torch.Generator) -> Tensor:
    """(B,S,S) long label maps: per image one ellipse per class (random centre, radii S/10..S/4),
    later classes drawn over earlier ones, background 0."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    out = torch.zeros(b, size, size, dtype=torch.long)
    for i in range(b):
        for c in classes:
            cy, cx, ry, rx = (torch.rand(4, generator=gen) * torch.tensor([0.5, 0.5, 0.15, 0.15]) +
                              torch.tensor([0.25, 0.25, 0.1, 0.1])) * size
            out[i][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = c
    return out


def _stage_indices(stages: list[StageSection], wanted: list[str] | None) -> list[int]:
    names = [s.name for s in stages]
    if not wanted:
        return list(range(len(stages)))
    out = []
    for w in wanted:
        if w in names:
            out.append(names.index(w))
        elif w.lstrip("-").isdigit() and -len(stages) <= int(w) < len(stages):
            out.append(int(w) % len(stages))
        else:
            raise SamfxError(f"--stage {w!r}: the recipe's stages are {', '.join(names)} "
                             f"(or indices 0..{len(stages) - 1})")
    return out


def _rel_pos_mode(model: nn.Module, dev: torch.device) -> str:
    found = {getattr(m, "rel_pos_mode", None) for m in model.modules() if type(m).__name__ == "FastAttention"}
    modes = {m for m in found if m is not None}
    if not modes:
        return "reference" if any(type(m).__name__ == "Attention" and hasattr(m, "rel_pos_h")
                                  for m in model.modules()) else "n/a"
    return ",".join(sorted(("fold" if dev.type == "cuda" else "bias") if m == "auto" else m for m in modes))


def run_bench(recipe_path: str, overrides: list[str], device: str = "auto", batch: int | None = None,  # noqa: PLR0913  (mirrors samfx bench's options)
              infer_batches: tuple[int, ...] = (1, 32), steps: int = 10, warmup: int = 3,
              modes: tuple[str, ...] = MODES, precisions: tuple[str, ...] = PRECISIONS,
              stages: list[str] | None = None, only: str | None = None, threads: int | None = None,
              compile_mode: str = "default", profile_dir: str | Path | None = None,
              out: str | Path | None = None) -> dict[str, Any]:
    """Benchmark `recipe_path`; returns (and writes to `out` after every configuration)
    ``{"schema", "complete", "info", "results": [BenchResult as dict...]}``."""

    _check_options(batch, infer_batches, steps, warmup, modes, precisions, only, threads)
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device, option="--device ")
    registry = get_registry()
    recipe = load_recipe(recipe_path, overrides, registry)
    cfg = recipe.typed
    stage_cfgs = cfg.train.stages
    chosen = _stage_indices(stage_cfgs, stages)
    classes = list(cfg.data.classes)
    batch = cfg.data.batch_size if batch is None else batch
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = _bench_model(recipe, registry, dev)
    profile_dir = Path(profile_dir) if profile_dir else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    infer_prompt = prompt_key(recipe, cfg.eval.prompt or stage_cfgs[-1].prompt)
    settings = _Settings(dev, steps, warmup, compile_mode, profile_dir)
    info = _info(model, recipe, recipe_path, overrides, chosen, infer_prompt, settings)
    report: dict[str, Any] = {"schema": SCHEMA, "complete": False, "info": info, "results": []}
    for compiled in [m == "compiled" for m in modes]:
        for precision in precisions:
            runs: list[tuple[str, int, int]] = []
            if only != "infer":
                runs += [("train", i, batch) for i in chosen]
            if only != "train":
                runs += [("infer", -1, b) for b in infer_batches]
            for mode, index, b in runs:
                step_mod, label, opt_cfg = _step_module(model, recipe, registry, mode, index, dev, infer_prompt)
                case = _Case(mode, label, compiled, precision, b)
                report["results"].append(asdict(_run_one(model, step_mod, opt_cfg, case, classes, settings)))
                _write(report, out)

    report["complete"] = True
    _write(report, out)
    return report


def _check_options(batch: int | None, infer_batches: tuple[int, ...], steps: int, warmup: int,
                   modes: tuple[str, ...], precisions: tuple[str, ...], only: str | None,
                   threads: int | None) -> None:
    """A SamfxError naming the first out-of-range or unknown option."""
    for name, value, low in (("--batch", 1 if batch is None else batch, 1), ("--steps", steps, 1),
                             ("--warmup", warmup, 0)):
        if value < low:
            raise SamfxError(f"{name} {value}: must be >= {low}")
    if any(b < 1 for b in infer_batches):
        raise SamfxError(f"--infer-batch {list(infer_batches)}: batch sizes must be >= 1")
    bad = [m for m in modes if m not in MODES] + [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise SamfxError(f"bench: unknown mode/precision {bad[0]!r}; modes: {', '.join(MODES)}; "
                         f"precisions: {', '.join(PRECISIONS)}")
    if only not in (None, "train", "infer"):
        raise SamfxError(f"--only {only!r}: use train or infer")
    if threads is not None and threads < 1:
        raise SamfxError(f"--threads {threads}: must be >= 1")


def _bench_model(recipe: Recipe, registry: Any, dev: torch.device) -> SegmentationModel:
    """The recipe's model without its checkpoint, on `dev`, with the trainer's channels-last and
    activation-checkpointing settings."""

    train = recipe.typed.train
    model = build_model(recipe, registry, load_checkpoint=False).to(dev)
    if train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if train.activation_checkpointing:
        model.image_encoder.set_activation_checkpointing(True)   # encoders without it refuse
    return model


@dataclass(frozen=True)
class _Settings:
    """What every configuration of one run_bench call shares: device, timed and warm-up steps,
    torch.compile mode and the folder for profiles (None: no profiling)."""

    dev: torch.device
    steps: int
    warmup: int
    compile_mode: str
    profile_dir: Path | None


@dataclass(frozen=True)
class _Case:
    """One configuration: train or infer, its row label, compiled or eager, precision and batch size."""

    mode: str
    label: str
    compiled: bool
    precision: str
    batch: int


def _info(model: SegmentationModel, recipe: Recipe, recipe_path: str, overrides: list[str], chosen: list[int],
          infer_prompt: str, settings: _Settings) -> dict[str, Any]:
    """The report's ``info``: machine, torch, recipe, model and settings (each chosen stage applied once
    to count its trainable parameters)."""

    dev, compile_mode, steps, warmup = settings.dev, settings.compile_mode, settings.steps, settings.warmup
    cfg = recipe.typed
    stage_cfgs = cfg.train.stages
    total, _ = count_params(model)
    stage_info = {}
    for i in chosen:
        apply_stage(model, recipe, i)
        stage_info[stage_cfgs[i].name] = {"trainable": count_params(model)[1], "prompt": model.active_prompt}
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
            f"cpu ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads",
            "device_type": dev.type, "cpu": cpu_info(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_avg_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "recipe": recipe_path, "overrides": list(overrides), "image_size": model.image_size,
            "queries_per_image": len(cfg.data.classes),
            "params_total": total, "stages": stage_info, "infer_prompt": infer_prompt,
            "fast_attention": cfg.model.image_encoder.get("fast_attention"),
            "rel_pos_mode": _rel_pos_mode(model, dev),
            "channels_last": cfg.train.channels_last,
            "activation_checkpointing": cfg.train.activation_checkpointing,
            "compile_mode": compile_mode, "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark, "steps": steps, "warmup": warmup,
            "memory": "cuda max_memory_allocated" if dev.type == "cuda" else "process RSS peak, sampled every 2 ms"}


def _step_module(model: SegmentationModel, recipe: Recipe, registry: Any, mode: str, index: int,
                 dev: torch.device, infer_prompt: str) -> tuple[nn.Module, str, OptimizerSection | None]:
    """(step module, row label, optimizer config) of one configuration: stage `index`'s trainable set,
    loss and optimizer in the trainer's step module (train), or the eval prompt's forward (infer)."""
    classes = list(recipe.typed.data.classes)
    if mode == "train":
        apply_stage(model, recipe, index)
        st = recipe.typed.train.stages[index]
        loss_fn = build_extra(model, "loss", st.loss, f"train.stages.{index}.loss", registry).to(dev)
        step = ImageStep(model, classes, loss_fn, st.object_score_weight)   # the trainer's step module
        return step, st.name, st.optimizer
    model.use_prompt(infer_prompt)
    return InferStep(model, classes), infer_prompt, None


def _write(report: dict[str, Any], out: str | Path | None) -> None:
    """The report so far (``complete`` false until the last configuration), so a killed run keeps its rows."""
    if out is not None:
        write_text(Path(out), json.dumps(report, indent=2))


def _optimizer(model: SegmentationModel, opt_cfg: OptimizerSection | None, label: str) -> torch.optim.Optimizer | None:
    """The stage's optimizer as the trainer builds it (fused Adam/AdamW on CUDA) over the trainable
    parameters; None without a config (infer rows) or without trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build_optimizer(params, opt_cfg, f"stage '{label}' optimizer") if opt_cfg is not None and params else None


def _run_one(model, step_mod, opt_cfg: OptimizerSection | None, case: _Case, classes,
             settings: _Settings) -> BenchResult:
    """The row of `case` (optimizer from `opt_cfg` when training); errors are reported in the row."""
    mode, label, compiled, precision, b = case.mode, case.label, case.compiled, case.precision, case.batch
    dev, steps, warmup, profile_dir = settings.dev, settings.steps, settings.warmup, settings.profile_dir
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(b, 3, model.image_size, model.image_size, generator=gen).to(dev)
    labels = synthetic_labels(b, model.image_size, classes, gen).to(dev)
    opt = _optimizer(model, opt_cfg if mode == "train" else None, label)
    dtype = torch.bfloat16 if precision == "bf16" else None
    fn, compile_mode = step_mod, settings.compile_mode
    if compiled:
        torch._dynamo.reset()
        fn = torch.compile(step_mod, dynamic=False, mode=None if compile_mode == "default" else compile_mode)
    model.train(mode == "train")

    def step() -> None:
        if mode == "train":
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                loss, *_ = fn(images, labels)
            loss.backward()
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)
            else:
                model.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                fn(images, labels)

    row = BenchResult(mode, label, compiled, precision, b, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    mem = Memory(dev)
    row.start_mem_gib = mem.current()
    try:
        with mem:
            first = 0.0
            for i in range(max(warmup, 1 if compiled else 0)):
                t0 = time.perf_counter()
                step()
                if i == 0:
                    sync(dev)
                    first = time.perf_counter() - t0
            times = timed(step, dev, steps)
        ms = sum(times) / len(times)
        row.img_per_s, row.step_ms, row.step_ms_min, row.first_step_s = b * 1000.0 / ms, ms, min(times), first
        row.peak_mem_gib, row.peak_reserved_gib = mem.peaks()
        row.load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if profile_dir is not None:
            name = f"{label}_{mode}_{'compiled' if compiled else 'eager'}_{precision}_b{b}.txt"
            row.profile = str(profile_steps(step, dev, min(steps, 3), profile_dir / name))
    except Exception as exc:  # report and go on (OOM, an op without bf16 kernel, compile failure)
        row.error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
    finally:
        model.zero_grad(set_to_none=True)
        opt = fn = None  # free optimizer state and compiled graph now (not `del`: step() closes over them)
    return row
