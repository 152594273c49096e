"""What one training stage runs with: its trainable parameters, loss, optimizer, schedule, gradient
scaler and length, built from ``train.stages.N`` (and, resuming mid-stage, restored from last.pt);
the stage in progress (:class:`StageRun`) and its optimizer step (:func:`apply_gradients`)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from samfx.config.recipe import Recipe
from samfx.config.schema import StageSection
from samfx.contracts.errors import RecipeError, SamfxError
from samfx.engine.run.log import stage_steps
from samfx.engine.train.optim import build_optimizer, build_scheduler
from samfx.model.build import build_extra
from samfx.model.trainable import apply_stage

if TYPE_CHECKING:
    from samfx.contracts.registry import Registry
    from samfx.engine.run.checkpoints import Progress
    from samfx.engine.train.stepvalues import StepValues
    from samfx.model.segmentation import SegmentationModel


class TrainingError(SamfxError):
    """Training had to stop (non-finite loss or gradient); the last good checkpoint is kept."""


def nonfinite_error(what: str, where: str, last: Path, precision: str) -> TrainingError:
    """The one-line stop for a non-finite `what` (loss, gradient norm) at `where` (stage, epoch, step)."""
    kept = f"last good checkpoint kept: {last}" if last.exists() else "no checkpoint was written yet"
    hint = "lower the learning rate or set train.grad_clip"
    if precision == "fp16":
        hint += ", or train in bf16/fp32 (fp16 overflows)"
    return TrainingError(f"{where}: {what}; training stopped, {kept}; {hint}")


@dataclass
class StagePlan:
    params: list[nn.Parameter]
    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler | None
    accum: int                # micro-batches per optimizer step
    per_epoch: int            # micro-batches per epoch
    total: int                # optimizer steps of the stage (epochs, or max_steps when smaller)
    epochs: int               # epochs the loop may start to reach `total`


def plan_stage(model: SegmentationModel, recipe: Recipe, registry: Registry, index: int, per_epoch: int,
               precision: str, device: torch.device, state: dict[str, Any] | None) -> StagePlan:
    """Select stage `index`'s trainable set and build what it trains with; `state` (last.pt's
    train_state when resuming inside this stage) restores the optimizer, schedule and scaler."""

    train = recipe.typed.train
    st, where = train.stages[index], f"train.stages.{index}"
    apply_stage(model, recipe, index)
    params = [q for q in model.parameters() if q.requires_grad]
    if not params:
        raise RecipeError(f"{where}.trainable: selects no parameters; name a component (e.g. 'prompt')")
    loss_fn = build_extra(model, "loss", st.loss, f"{where}.loss", registry).to(device)
    opt = build_optimizer(params, st.optimizer, f"{where}.optimizer")
    accum = train.grad_accum
    steps_per_epoch = math.ceil(per_epoch / accum)
    total = stage_steps(st.epochs, st.max_steps, per_epoch, accum)
    epochs = max(1, st.epochs) if not st.max_steps else max(st.epochs, math.ceil(total / steps_per_epoch))
    sched = build_scheduler(opt, st.schedule, total, f"{where}.schedule")
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    if state is not None and "optimizer" in state:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    return StagePlan(params, loss_fn, opt, sched, scaler, accum, per_epoch, total, epochs)


@dataclass
class StageRun:
    """A stage being trained: its recipe entry, plan, step module and how batches reach the device."""
    index: int
    st: StageSection          # train.stages.N
    plan: StagePlan
    step_mod: nn.Module       # samfx.engine.train.steps.build_step: forward + loss (DDP-wrapped under torchrun)
    batch_to_device: Callable[[dict[str, Any], torch.device], tuple[Tensor | None, ...]]

    def done(self, progress: Progress) -> bool:
        """Whether the stage has made all of its optimizer steps."""
        return progress.step >= self.plan.total


def apply_gradients(plan: StagePlan, grad_clip: float | None, values: StepValues, epoch: int, step: int) -> float:
    """One optimizer step over the accumulated gradients: unscale (fp16), clip the global norm to
    `grad_clip` (none: only measure it; recorded in `values` as step `step`'s gradient norm, except
    under the fp16 scaler, which skips non-finite steps itself), step, zero the gradients and advance
    the schedule. Returns the learning rate the step used."""
    opt, scaler = plan.opt, plan.scaler
    if scaler is not None:
        scaler.unscale_(opt)
    norm = torch.nn.utils.clip_grad_norm_(plan.params, grad_clip if grad_clip else math.inf)
    if scaler is None:
        values.add("gradient norm", norm, epoch, step)
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    opt.zero_grad(set_to_none=True)
    lr: float = opt.param_groups[0]["lr"]
    plan.sched.step()
    return lr
