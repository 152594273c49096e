"""What ``Trainer.fit`` holds while it runs: its run folder and the stop signals.

Rank 0 claims the folder (:func:`samfx.engine.run.rundir.claim`: the lock, then every check) before
anything in it is written, and holds the lock until fit returns or raises. Rank 0's errors are
broadcast, so every rank stops and none waits forever. Only rank 0 writes the folder.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from samfx.config.recipe import Recipe
from samfx.contracts.errors import SamfxError
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import distributed as D
from samfx.engine.run import rundir
from samfx.engine.run.seeding import rng_state
from samfx.engine.train.interrupt import StopSignals

if TYPE_CHECKING:
    from samfx.contracts.registry import Registry
    from samfx.engine.run.checkpoints import Progress


class RunSession(contextlib.ExitStack):
    def __init__(self, run_dir: Path | None, recipe: Recipe, resume: bool):
        super().__init__()
        self.run_dir, self.recipe, self.resume = run_dir, recipe, resume
        self.main = D.env_info().is_main
        self.stop = self.enter_context(StopSignals())

    def claim(self) -> dict[str, Any] | None:
        """Lock and check the folder (a new one under train.out_dir when none was named); resuming,
        last.pt's content on every rank. A folder this call created is removed when fit leaves it
        empty (e.g. the model failed to build)."""
        existed = self.run_dir is not None and self.run_dir.exists()

        def claim() -> dict[str, Any] | None:
            self.run_dir, lock, obj = rundir.claim(self.run_dir, self.recipe, self.resume)
            if not existed:  # a folder this run made is removed again when nothing was written in it
                self.callback(rundir.remove_if_empty, self.run_dir)
            self.callback(lock.release)
            return obj

        obj = self.on_main(claim)
        self.run_dir = Path(D.broadcast_object(str(self.run_dir)))
        if self.resume and not self.main:
            obj = ckpt.load(self.run_dir / rundir.LAST)
        return obj

    @property
    def folder(self) -> Path:
        assert self.run_dir is not None, "claim() names the run folder first"
        return self.run_dir

    def prepare(self, registry: Registry, plugin_versions: dict[str, str]) -> None:
        """Write recipe.yaml and versions.json: once every check (including the weights) has passed."""
        self.on_main(lambda: rundir.prepare(self.folder, self.recipe, registry, plugin_versions))

    def save_last(self, model: torch.nn.Module, progress: Progress, opt: torch.optim.Optimizer | None = None,
                  sched: Any = None, scaler: torch.amp.GradScaler | None = None) -> None:
        """last.pt: weights, position, optimizer / scheduler / scaler and every rank's RNG states."""
        states = D.gather_lists([rng_state()])  # every rank takes part
        if not self.main:
            return
        train_state: dict[str, Any] = {"rng": states}
        if opt is not None:
            train_state.update(optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                               scaler=scaler.state_dict() if scaler is not None else None)
        obj = ckpt.make(model, self.recipe, progress=asdict(progress), train_state=train_state)
        with self.stop.shielded():
            ckpt.save(obj, self.folder / rundir.LAST)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on rank 0 only; its SamfxError is raised on every rank."""
        error, out = None, None
        if self.main:
            try:
                out = fn()
            except SamfxError as exc:
                error = exc
        message = D.broadcast_object(str(error) if error else None)
        if error is not None:
            raise error
        if message:
            raise SamfxError(message)
        return out
