"""Scalar logging of a run: CSV (the record), TensorBoard, a curves PNG drawn from the CSV, and the
progress line of training on the console (:func:`train_bar`, with the whole run's ETA).

Resuming truncates rows logged after the checkpoint's global step (they will be logged again), so
the CSV of a resumed run equals that of an uninterrupted one.
"""
from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samfx.data.progress import progress_bar

FIELDS = ["global_step", "stage", "epoch", "step", "key", "value"]


class RunLog:
    def __init__(self, run_dir: Path | None, resume_step: int | None = None, tensorboard: bool = True):
        """`run_dir` None disables all output (DDP ranks > 0)."""
        self.run_dir = run_dir
        self.writer = None
        if run_dir is None:
            return
        self.csv_path = run_dir / "log.csv"
        if resume_step is not None and self.csv_path.exists():
            rows = [r for r in self.rows() if int(r["global_step"]) <= resume_step]
            self._rewrite(rows)
        elif not self.csv_path.exists() or resume_step is None:
            self._rewrite([])
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)
            except Exception:  # tensorboard missing or broken: CSV stays the record
                self.writer = None

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with self.csv_path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, FIELDS)
            w.writeheader()
            w.writerows(rows)

    def rows(self) -> list[dict[str, str]]:
        if self.run_dir is None or not self.csv_path.exists():
            return []
        with self.csv_path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def log(self, values: dict[str, float], global_step: int, stage: str, epoch: int, step: int) -> None:
        if self.run_dir is None:
            return
        with self.csv_path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, FIELDS)
            for key, value in values.items():
                w.writerow({"global_step": global_step, "stage": stage, "epoch": epoch, "step": step,
                            "key": key, "value": f"{float(value):.8g}"})
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, float(value), global_step)
            self.writer.flush()

    def curves(self) -> Path | None:
        """Draw every logged key against the global step into curves.png (one panel per key group)."""
        if self.run_dir is None:
            return None
        rows = self.rows()
        if not rows:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series: dict[str, tuple[list[int], list[float]]] = {}
        for r in rows:
            xs, ys = series.setdefault(r["key"], ([], []))
            xs.append(int(r["global_step"]))
            ys.append(float(r["value"]))
        groups = {"loss": [k for k in series if k.endswith("loss")],
                  "metrics": [k for k in series if not k.endswith("loss") and not k.endswith("lr")],
                  "lr": [k for k in series if k.endswith("lr")]}
        groups = {g: ks for g, ks in groups.items() if ks}
        fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.5), squeeze=False)
        for ax, (title, keys) in zip(axes[0], groups.items()):
            for key in sorted(keys):
                xs, ys = series[key]
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=key)
            ax.set_title(title)
            ax.set_xlabel("optimizer step")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        out = self.run_dir / "curves.png"
        tmp = self.run_dir / ".curves.tmp.png"
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        tmp.replace(out)
        return out

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def stage_steps(epochs: int, max_steps: int | None, per_epoch: int, accum: int) -> int:
    """A stage's optimizer steps: `epochs` epochs of `per_epoch` micro-batches in groups of `accum`, or
    `max_steps` when smaller (or when `epochs` is 0); the stage plan's total and the run clock's."""
    steps_per_epoch = math.ceil(per_epoch / accum)
    total = epochs * steps_per_epoch
    if max_steps:
        total = min(total, max_steps) if epochs >= 1 else max_steps
    return total


def run_steps(stages: Sequence[Any], per_epoch: int, accum: int) -> int:
    """The whole run's optimizer steps: :func:`stage_steps` summed over the recipe's train.stages."""
    return sum(stage_steps(st.epochs, st.max_steps, per_epoch, accum) for st in stages)


@dataclass
class RunClock:
    """The whole run's ETA: `total` optimizer steps over all stages, `start` of them done when this
    process began (resuming: the checkpoint's global step); the rate is that of the steps since."""

    total: int
    start: int = 0
    began: float = field(default_factory=time.monotonic)

    def eta(self, step: int, now: float | None = None) -> float | None:
        """Seconds left at global step `step` (None until this process has made a step)."""
        done = step - self.start
        if done <= 0:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.began
        return max(0, self.total - step) * elapsed / done

    def text(self, step: int, now: float | None = None) -> str:
        """``run 12/300 steps, ETA 0:04:31`` (``ETA -:--:--`` before the first step)."""
        eta = self.eta(step, now)
        left = "-:--:--" if eta is None else _hms(eta)
        return f"run {step}/{self.total} steps, ETA {left}"


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def loss_text(loss: float | None) -> str:
    """The progress line's loss: blank until the first loss is known (never ``loss nan``)."""
    return "" if loss is None else f"loss {loss:.4f}"


@contextmanager
def train_bar(total: int, description: str, enabled: bool, clock: RunClock, step: Callable[[], int],
              console: Any = None) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, loss=None)`` for an epoch of `total` micro-batches: a transient progress bar
    with the epoch's count, elapsed time and ETA, the last loss given (:func:`loss_text`) and the whole
    run's steps and ETA (`clock` at global step ``step()``); a no-op when not `enabled`."""
    last: list[float | None] = [None]

    def status(loss: float | None) -> tuple[str, str]:
        if loss is not None:
            last[0] = loss
        return loss_text(last[0]), clock.text(step())

    with progress_bar(total, description, enabled, status=status, transient=True, console=console) as advance:
        yield advance
