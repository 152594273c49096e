"""Optimizer and learning-rate schedule of a stage (``train.stages.N.optimizer`` / ``.schedule``).

The schedule is a pure function of the optimizer step, so resuming restores it exactly:
linear warmup from lr/warmup_steps to lr over ``warmup_steps``, then
``constant``, ``cosine`` (to ``min_lr`` at the stage's last step) or ``step`` (x ``gamma`` every
``step_size`` steps).
"""
from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from samfx.config.schema import OptimizerSection, ScheduleSection
from samfx.contracts.errors import RecipeError


def build_optimizer(params: list[nn.Parameter], cfg: OptimizerSection, where: str) -> torch.optim.Optimizer:
    """The optimizer `cfg` names over `params`; `where` (its recipe key) prefixes errors."""
    name = cfg.name
    lr, wd = cfg.lr, cfg.weight_decay
    betas = cast(tuple[float, float], tuple(cfg.betas))
    # one fused kernel for the whole update on CUDA instead of a few multi-tensor launches per step
    fused = {"fused": True} if params and all(q.is_cuda for q in params) else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd, **fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    raise RecipeError(f"{where}.name: unknown optimizer '{name}'; use adam, adamw or sgd")


def lr_factor(step: int, cfg: ScheduleSection, total_steps: int, base_lr: float) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based)."""
    warmup = cfg.warmup_steps
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    name = cfg.name
    if name == "constant":
        return 1.0
    if name == "step":
        return cfg.gamma ** ((step - warmup) // max(1, cfg.step_size))
    if name == "cosine":
        span = max(1, total_steps - warmup)
        t = min(1.0, (step - warmup) / span)
        floor = cfg.min_lr / base_lr if base_lr > 0 else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    raise RecipeError(f"schedule.name: unknown schedule '{name}'; use constant, cosine or step")


def build_scheduler(opt: torch.optim.Optimizer, cfg: ScheduleSection, total_steps: int,
                    where: str) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step schedule `cfg` names over `total_steps` optimizer steps; `where` prefixes errors."""
    if cfg.name not in {"constant", "cosine", "step"}:
        raise RecipeError(f"{where}.name: unknown schedule '{cfg.name}'; use constant, cosine or step")
    base = opt.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, total_steps, base))
