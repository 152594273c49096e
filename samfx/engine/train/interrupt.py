"""Ctrl-C (SIGINT), SIGTERM (Slurm, Kubernetes) and SIGHUP (a closed terminal or SSH session) during
training: stop at a step, resumable.

While ``Trainer.fit`` runs, :class:`StopSignals` handles the three signals alike. Inside a stage's epoch
loop (``deferring``) the first signal only records the stop: the trainer finishes the optimizer
step, writes ``last.pt`` at that step boundary (during validation or at a stage's last step: after
the validation, which writes it anyway) and raises :class:`Interrupted`; the resumed run then ends
with the same weights as an uninterrupted one. Elsewhere (building the model and data, between
stages) and on a second Ctrl-C, :class:`Interrupted` is raised at once and ``last.pt`` is the
last one written. Repeated SIGTERMs do not escalate (torchrun forwards a Ctrl-C as SIGTERM). While a checkpoint is
being written (:meth:`StopSignals.shielded`) every signal is only recorded: the write completes, and
a second Ctrl-C received meanwhile raises :class:`Interrupted` right after it.
Under DDP the ranks agree: a signal seen by any rank stops every rank at the same step.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samfx.engine.run.loaders import STOP_SIGNALS as STOP_SIGNALS  # re-exported
from samfx.engine.run.loaders import ignore_in_worker as ignore_in_worker  # re-exported: the loaders' worker_init_fn


class Interrupted(KeyboardInterrupt):
    """Training stopped by signal `signum`; ``saved_step``: the global step last.pt was written at
    on the way out (None: abandoned, last.pt is the last one written before). str(): one line."""

    def __init__(self, signum: int, saved_step: int | None = None):
        super().__init__(f"interrupted ({signal.Signals(signum).name})")
        self.signum, self.saved_step = signum, saved_step

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def explain(self, run_dir: Path | None) -> Interrupted:
        """Set the message: where training stopped and how to continue; returns self."""
        name = signal.Signals(self.signum).name
        last = run_dir / "last.pt" if run_dir is not None else None
        if self.saved_step is not None:
            text = (f"interrupted ({name}) after step {self.saved_step}, saved in {last}; continue with "
                    f"`samfx train --resume {run_dir}`")
        elif last is not None and last.is_file():
            text = f"interrupted ({name}); continue from its last checkpoint with `samfx train --resume {run_dir}`"
        else:
            text = f"interrupted ({name}) before the first checkpoint; nothing to resume, start the run again"
        self.args = (text,)
        return self


class StopSignals:
    """Context manager installing the handlers (main thread only; elsewhere signals keep their
    handlers and nothing is deferred)."""

    def __init__(self) -> None:
        self.pending = 0        # the first stop signal received, 0: none
        self.deferring = False
        self._shielding = False
        self._escalated = False  # a signal that would have raised came while shielded
        self._previous: dict[int, Any] = {}
        self._group = None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Signals received inside are recorded, never raised: the block (a checkpoint write) completes.
        On leaving, a signal that would have raised inside (a second Ctrl-C; any stop signal while not
        deferring) raises :class:`Interrupted`."""
        outer = self._shielding
        self._shielding = True
        try:
            yield
        finally:
            self._shielding = outer
        if not outer and self._escalated:
            self._escalated = False
            raise Interrupted(self.pending)

    def _handle(self, signum: int, frame) -> None:
        if not self.pending:
            self.pending = signum
            if self.deferring:
                return
        elif signum != signal.SIGINT:
            return
        if self._shielding:
            self._escalated = True
            return
        raise Interrupted(self.pending)

    def agreed(self) -> int:
        """The pending stop signal (0: none), the same on every DDP rank; a collective under DDP."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.pending
        if self._group is None:  # a CPU group: no GPU synchronisation per step
            self._group = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        flag = torch.tensor([self.pending])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return int(flag.item())

