"""A long training says how long, at its start.

:class:`RunEstimate` is a trainer callback (``cb(trainer, event)``). It times the optimizer steps
``warmup`` (the first step this process makes: compilation, allocator and data-loader warm-up) to
``warmup + steps``, estimates the whole run as all stages' steps (``RunClock.total``) times that
rate, and, when the estimate exceeds ``threshold_s`` (default :data:`THRESHOLD_S`, 2 hours), prints
once (rank 0, not when quiet)::

    estimated time for the whole run: ~3.4 h on cpu (1200 steps at 10.2 s/step)

On the CPU with a large image encoder (:func:`sized_for_gpu`) it adds ``; this recipe is sized for
a GPU``. Nothing is printed for shorter runs, and nothing after the first estimate.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from samfx.engine.train.trainer import Trainer

THRESHOLD_S = 2 * 3600.0         # estimates above this are printed
STEPS = 3                        # timed steps, after the first (warm-up) step
LARGE_PARAMS = 50_000_000        # an image encoder above this many parameters is sized for a GPU
LARGE_IMAGE = 1024               # as is one taking images this large (image_size ≥ this)


def sized_for_gpu(encoder: nn.Module, image_size: int) -> bool:
    """True for an image encoder with more than :data:`LARGE_PARAMS` parameters or an
    ``image_size`` of at least :data:`LARGE_IMAGE` (SAM's ViT-B at 1024 px is both)."""
    return image_size >= LARGE_IMAGE or sum(p.numel() for p in encoder.parameters()) > LARGE_PARAMS


def estimate_text(total: int, per_step: float, device: str, gpu_sized: bool) -> str:
    """``estimated time for the whole run: ~H h on DEVICE (N steps at X s/step)``, plus the GPU hint
    when `device` is ``cpu`` and `gpu_sized`."""
    text = (f"estimated time for the whole run: ~{total * per_step / 3600:.1f} h on {device} "
            f"({total} steps at {per_step:.3g} s/step)")
    if device == "cpu" and gpu_sized:
        text += "; this recipe is sized for a GPU"
    return text


class RunEstimate:
    """Trainer callback: the whole-run estimate, printed through `say` at most once (see module doc).
    `clock` returns seconds (``time.monotonic``); `threshold_s` None: :data:`THRESHOLD_S` when the estimate is made."""

    def __init__(self, say: Callable[[str], None], *, threshold_s: float | None = None, steps: int = STEPS,
                 clock: Callable[[], float] = time.monotonic):
        self.say, self.threshold_s, self.steps, self.clock = say, threshold_s, steps, clock
        self._first: tuple[int, float] | None = None  # (global step, time) after the warm-up step
        self.done = False
        self.seconds: float | None = None  # the estimate, once made

    def __call__(self, trainer: Trainer, event: str) -> None:
        if self.done or event != "step":
            return
        step, now = trainer.progress.global_step, self.clock()
        if self._first is None:
            self._first = (step, now)
            return
        timed = step - self._first[0]
        if timed < self.steps:
            return
        self.done = True
        self._report(trainer, (now - self._first[1]) / timed)

    def _report(self, trainer: Any, per_step: float) -> None:
        total = trainer.clock.total
        self.seconds = total * per_step
        if self.seconds <= (THRESHOLD_S if self.threshold_s is None else self.threshold_s):
            return
        model = trainer.model
        gpu_sized = sized_for_gpu(model.image_encoder, model.image_size)
        self.say(estimate_text(total, per_step, trainer.device.type, gpu_sized))
