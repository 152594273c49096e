"""Per-step losses and gradient norms, kept on the device until the trainer reads them.

Reading a CUDA scalar (``float(loss)``) makes the host wait for the GPU: a step that did so could
not queue its backward pass before the forward had finished. The trainer records each micro-batch's
loss and each optimizer step's gradient norm here as tensors and reads all pending ones in one
transfer (:meth:`StepValues.drain`) every ``train.log_every`` steps, at the end of an epoch and before
any checkpoint is written, so a non-finite value is still reported with the step it came from and
never reaches a checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class StepValue:
    what: str      # "loss" (one micro-batch) or "gradient norm" (one optimizer step)
    epoch: int     # 0-based epoch of the stage
    step: int      # 1-based optimizer step of the stage the value belongs to
    value: float


class StepValues:
    """A queue of 0-dim tensors with the position each came from."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, int, int, Tensor]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, what: str, value: Tensor, epoch: int, step: int) -> None:
        self._pending.append((what, epoch, step, value.detach().float().reshape(())))

    def drain(self) -> list[StepValue]:
        """Every pending value, oldest first, read back with a single device-to-host copy."""
        if not self._pending:
            return []
        values = torch.stack([t for *_, t in self._pending]).tolist()
        out = [StepValue(what, epoch, step, v) for (what, epoch, step, _), v in zip(self._pending, values)]
        self._pending.clear()
        return out
