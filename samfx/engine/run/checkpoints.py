"""samfx checkpoints: what they hold and how eval / predict / resume read them.

    {"format": "samfx", "version": 1,
     "model": state_dict (CPU tensors), "recipe": resolved recipe (plain data),
     "prompt": active prompt generator key, "samfx_version": str,
     "progress": {stage, epoch, batch, step, global_step, ... , finished},
     "metric": {name, value} (best.pt), "train_state": {optimizer, scheduler, scaler,
     rng: [per-rank RNG states]} (last.pt only)}

Files are written with :func:`samfx.checkpoints.files.atomic_save` (temp file + fsync + rename) and read
with ``weights_only=True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import samfx
from samfx.checkpoints.files import FORMAT, check_values, read_checkpoint, save_checkpoint
from samfx.config.recipe import Recipe
from samfx.contracts.errors import CheckpointError
from samfx.model.build import build_model

VERSION = 1


@dataclass
class Progress:
    """Where training stands: a checkpoint's "progress"."""
    stage: int = 0
    epoch: int = 0            # current epoch within the stage (0-based)
    batch: int = 0            # micro-batches of the current epoch already trained on
    step: int = 0             # optimizer steps in the current stage
    global_step: int = 0      # optimizer steps over all stages
    loss_sum: float = 0.0     # running sums for the epoch mean and the log window
    loss_count: int = 0
    window_sum: float = 0.0
    window_count: int = 0
    aux_window: dict[str, list[float]] = field(default_factory=dict)  # "aux/<name>" -> [sum, count]
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # per-stage summaries
    finished: bool = False

    def add_aux(self, what: str, value: float) -> None:
        acc = self.aux_window.setdefault(what, [0.0, 0])
        acc[0], acc[1] = acc[0] + value, acc[1] + 1

    def take_aux(self) -> dict[str, float]:
        """``train/aux/<name>``: each auxiliary loss's mean over the log window, which starts anew."""
        out = {f"train/{k}": s / max(1, n) for k, (s, n) in sorted(self.aux_window.items())}
        self.aux_window = {}
        return out


def make(model: torch.nn.Module, recipe: Recipe, **extra: Any) -> dict[str, Any]:

    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "model": state, "recipe": recipe.config,
            "prompt": getattr(model, "active_prompt", None), "samfx_version": samfx.__version__, **extra}


def save(obj: dict[str, Any], path: Path) -> None:
    """Atomically; a ``.safetensors`` path keeps the weights as tensors and the rest as JSON metadata."""
    save_checkpoint(obj, path)


def load(path: str | Path) -> dict[str, Any]:
    obj = read_checkpoint(path)
    if obj.get("format") != FORMAT or "recipe" not in obj:
        raise CheckpointError(f"{path}: not a samfx checkpoint (no stored recipe); eval and predict need a "
                              f"checkpoint written by `samfx train` (last.pt / best.pt)")
    return obj


def recipe_of(obj: dict[str, Any]) -> Recipe:
    return Recipe(config=obj["recipe"], path=None)


def load_model(path: str | Path, registry=None, device: str | torch.device = "cpu"):
    """Rebuild the model from the checkpoint's own recipe and load its weights.

    Returns (model in eval mode, recipe, checkpoint object).
    """

    obj = load(path)
    recipe = recipe_of(obj)
    shapes = {k: tuple(v.shape) for k, v in obj["model"].items()} if isinstance(obj.get("model"), dict) else {}
    model = build_model(recipe, registry, load_checkpoint=False, weight_shapes=lambda: shapes)
    restore_weights(model, obj["model"], path, "was a plugin changed since training?")
    if obj.get("prompt") and obj["prompt"] in model.prompt_generators:
        model.use_prompt(obj["prompt"])
    return model.to(device).eval(), recipe, obj


def restore_weights(model: torch.nn.Module, state: Any, path: str | Path, hint: str) -> None:
    """Load every weight of `state` into `model`; a one-line CheckpointError ending in `hint` when
    keys or shapes do not fit (a damaged file, or a plugin changed since training), or when a value is of
    the wrong kind or not finite (``check_values``: the file and the first such key)."""
    own = model.state_dict()
    state = state if isinstance(state, dict) else {}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
    if missing or unexpected or reshaped:
        first = (missing or unexpected or reshaped)[:3]
        raise CheckpointError(f"{path}: weights do not fit the model rebuilt from its recipe ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected, {len(reshaped)} of another shape, e.g. "
                              f"{', '.join(first)}); {hint}")
    check_values(state, own, path)
    model.load_state_dict(state)
