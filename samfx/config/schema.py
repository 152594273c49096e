"""Typed schemas of a recipe's core sections. Component configs (``{name: ..., ...}``) are typed by
the schema their plugin registers; here they are ``Any`` and validated through the registry.

A recipe::

    base: other.yaml            # optional; deep merge, lists replaced
    model:   ModelSection
    data:    DataSection
    train:   TrainSection
    eval:    EvalSection
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from samfx.contracts.bounds import Range


@dataclass
class ModelSection:
    image_encoder: Any = field(default_factory=lambda: {"name": "samus"})
    prompt_encoder: Any = field(default_factory=lambda: {"name": "sam"})
    mask_decoder: Any = field(default_factory=lambda: {"name": "sam"})
    prompt: Any = field(default_factory=lambda: {"name": "clicks"})
    adapters: list[Any] = field(default_factory=list)
    temporal: Any = None
    # Official SAM / SAMUS-authors / samfx checkpoint loaded after building (path; ~ expanded).
    checkpoint: str | None = None
    # Loaded before `checkpoint`, which then overrides what both hold: the base weights a partial file
    # is trained on (e.g. SAM's vit_b under a SAMed LoRA file, which holds no image encoder).
    base_checkpoint: str | None = None
    # Keys of the checkpoint that may be missing beyond those the components add by design.
    checkpoint_allow_missing: list[str] = field(default_factory=list)


@dataclass
class AugmentSection:
    rotation: float = 10.0            # max degrees, uniform in [-r, r]
    scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    gamma: list[float] = field(default_factory=lambda: [0.8, 1.25])
    contrast: float = 0.2             # multiplicative jitter around the mean
    hflip: bool = False               # echo views have a fixed orientation


@dataclass
class DataSection:
    source: Any = field(default_factory=lambda: {"name": "synthetic_echo"})
    classes: list[int] = field(default_factory=lambda: [1, 2, 3])
    class_names: list[str] = field(default_factory=lambda: ["LV", "MYO", "LA"])
    batch_size: int = 4
    num_workers: int = 0
    augment: AugmentSection = field(default_factory=AugmentSection)
    clip_length: int = 0              # >0: train on clips of this many frames (temporal models)
    clip_labels: str = "all"          # clip training: "all" labeled frames, or "ed_es" only (CAMUS's sparse labels)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"


@dataclass
class OptimizerSection:
    name: str = "adam"                # adam | adamw | sgd
    lr: float = 5e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9


@dataclass
class ScheduleSection:
    name: str = "constant"            # constant | cosine | step
    warmup_steps: int = 0
    step_size: int = 1000
    gamma: float = 0.5
    min_lr: float = 0.0


@dataclass
class StageSection:
    name: str = "train"
    # Entries: a component ("image_encoder", "prompt", "adapters", ...), a component's own default
    # set ("image_encoder:default"), or a glob over parameter names ("image_encoder.blocks.*.attn.*").
    trainable: list[str] = field(default_factory=lambda: ["image_encoder:default", "adapters", "prompt"])
    prompt: Any = None                # a prompt_generator config used in this stage (default: model.prompt)
    epochs: int = 1
    max_steps: int | None = None   # stop the stage after this many optimizer steps
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: Any = field(default_factory=lambda: {"name": "dice_bce"})
    select_metric: str = "val/dice"   # one of SELECT_METRICS: "val/dice" (max), "val/loss" / "train/loss" (min)
    area_change_weight: float = 0.0   # clip training: weight of the area-change term (docs/temporal.md)
    object_score_weight: float = 1.0  # decoders with object scores (SAM2): weight of the presence BCE term


@dataclass
class TrainSection:
    seed: int = 0
    deterministic: bool = False       # torch's deterministic kernels (docs/engine.md, "What is reproducible")
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    precision: str = "auto"           # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    grad_accum: int = 1
    grad_clip: float | None = None
    log_every: int = 10
    val_every: int = 1                # epochs
    save_every: int = 0               # also write last.pt every N optimizer steps (0: at epoch ends only)
    # best weights as best.pt (torch) or best.safetensors (no pickle: safe to share); last.pt stays torch
    # format, since it holds the optimizer and RNG states safetensors cannot
    checkpoint_format: str = "pt"     # pt | safetensors
    out_dir: str = "runs"
    compile: bool = False
    channels_last: bool = False
    activation_checkpointing: bool = False
    stages: list[StageSection] = field(default_factory=lambda: [StageSection()])


@dataclass
class EvalSection:
    prompt: Any = None                # prompt generator at eval (default: the last stage's)
    split: str = "test"
    batch_size: int = 8
    compat_row_hd: bool = False       # also report the SAMUS authors' row-Hamming "HD" (not a distance)
    overlays: int = 4                 # overlay PNGs written per eval


@dataclass
class RecipeSchema:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    description: str = ""


# Where component configs sit in a recipe: key path -> registry kind. "*" marks a list.
COMPONENT_SLOTS: dict[str, str] = {
    "model.image_encoder": "image_encoder",
    "model.prompt_encoder": "prompt_encoder",
    "model.mask_decoder": "mask_decoder",
    "model.prompt": "prompt_generator",
    "model.adapters.*": "adapter",
    "model.temporal": "temporal_module",
    "data.source": "dataset",
    "train.stages.*.prompt": "prompt_generator",
    "train.stages.*.loss": "loss",
    "eval.prompt": "prompt_generator",
}


SELECT_METRICS = ("val/dice", "val/loss", "train/loss")
CLIP_LABELS = ("all", "ed_es")


# Checked when a recipe is loaded, before any data or model work. "*" marks list items.
RANGES: dict[str, Range] = {
    "data.batch_size": Range(ge=1),
    "data.num_workers": Range(ge=0, note="0 loads batches in the main process"),
    "data.clip_length": Range(ge=0, note="0 trains on single images"),
    "data.augment.rotation": Range(ge=0),
    "data.augment.contrast": Range(ge=0),
    "data.augment.scale.*": Range(gt=0),
    "data.augment.gamma.*": Range(gt=0),
    "train.grad_accum": Range(ge=1),
    "train.grad_clip": Range(gt=0, note="null: no clipping"),
    "train.log_every": Range(ge=1),
    "train.val_every": Range(ge=1),
    "train.save_every": Range(ge=0, note="0: last.pt at epoch ends only"),
    "train.stages.*.epochs": Range(ge=0, note="0 with max_steps: the stage runs max_steps steps"),
    "train.stages.*.max_steps": Range(ge=1, note="null: no limit"),
    "train.stages.*.optimizer.lr": Range(gt=0),
    "train.stages.*.optimizer.weight_decay": Range(ge=0),
    "train.stages.*.optimizer.betas.*": Range(ge=0, lt=1),
    "train.stages.*.optimizer.momentum": Range(ge=0),
    "train.stages.*.schedule.warmup_steps": Range(ge=0),
    "train.stages.*.schedule.step_size": Range(ge=1),
    "train.stages.*.schedule.gamma": Range(gt=0),
    "train.stages.*.schedule.min_lr": Range(ge=0),
    "train.stages.*.area_change_weight": Range(ge=0, note="0: no area-change term"),
    "train.stages.*.object_score_weight": Range(ge=0, note="0: the object-score head is not trained"),
    "eval.batch_size": Range(ge=1),
    "eval.overlays": Range(ge=0),
}
