"""The training loop: stages in order, exact resume, DDP, mixed precision, NaN stop.

Per stage (``train.stages.N``): :func:`samfx.model.trainable.apply_stage` picks the trainable set and
the prompt generator; the optimizer gets only trainable parameters; the schedule is per step;
the loss is the stage's ``loss`` component. A batch of images (B,3,S,S) and label maps (B,S,S)
goes through ``model.forward_classes`` (encoder once, one decoder query per class); see
:mod:`samfx.engine.train.steps`.

Resume: ``last.pt`` holds weights, optimizer, scheduler, scaler, every rank's RNG states and the
position (stage, epoch, batch within the epoch, steps). The data order is a function of
(seed, epoch) and each item's augmentation of (seed, epoch, index), so a run resumed from a
mid-epoch checkpoint sees exactly the batches it would have seen and ends with the same weights.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from samfx.config.recipe import Recipe
from samfx.config.schema import RecipeSchema, StageSection
from samfx.contracts.attribution import running
from samfx.contracts.errors import RecipeError
from samfx.contracts.plugins import get_plugins
from samfx.data.files import write_json
from samfx.engine.eval.inference import autocast, resolve_precision, to_device
from samfx.engine.eval.validation import Batching, validate_images, validate_sequences, write_overlays
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import distributed as D
from samfx.engine.run import rundir
from samfx.engine.run.checkpoints import Progress
from samfx.engine.run.loaders import collate, open_split, open_val_split, start_workers
from samfx.engine.run.log import RunClock, RunLog, run_steps, train_bar
from samfx.engine.run.seeding import EpochSeeded, derive_seed, seed_everything, set_deterministic, set_rng_state
from samfx.engine.train.estimate import RunEstimate
from samfx.engine.train.interrupt import Interrupted, ignore_in_worker
from samfx.engine.train.sampler import ResumableBatchSampler
from samfx.engine.train.session import RunSession
from samfx.engine.train.stage import StageRun, apply_gradients, nonfinite_error, plan_stage
from samfx.engine.train.stage import TrainingError as TrainingError  # re-exported: what fit() raises on NaN
from samfx.engine.train.steps import build_step, clip_batch_to_device
from samfx.engine.train.stepvalues import StepValues
from samfx.model.build import build_model, stage_losses
from samfx.model.forward_check import check_forward

if TYPE_CHECKING:
    from samfx.contracts.plugins import Plugins
    from samfx.contracts.registry import Registry
    from samfx.model.segmentation import SegmentationModel

SELECT = {"val/dice": max, "val/loss": min, "train/loss": min}  # names: schema.SELECT_METRICS, checked at load


class Trainer:
    """Train `recipe` into `run_dir`. ``datasets`` ({"train": ds, "val": ds or None}) replaces the
    recipe's data source (tests, notebooks). ``callbacks`` are called as ``cb(trainer, event)`` with
    event "step" after each optimizer step and "epoch" after each epoch."""

    def __init__(self, recipe: Recipe, run_dir: str | Path | None = None, *, registry: Registry | None = None,
                 plugin_versions: dict[str, str] | None = None,
                 datasets: Mapping[str, Dataset[Any] | None] | None = None, resume: bool = False,
                 callbacks: Sequence[Callable[[Trainer, str], None]] = (), quiet: bool = False):

        plugins: Plugins | None = None
        if registry is None:
            plugins = get_plugins()
            registry = plugins.registry
        self.registry = registry
        self.plugin_versions = plugin_versions or (plugins.versions() if plugins else {})
        self.recipe, self.resume, self.callbacks, self.quiet = recipe, resume, list(callbacks), quiet
        self.cfg: RecipeSchema = recipe.typed
        self.info = D.env_info()
        self.device = D.resolve_device(self.cfg.train.device, self.info)
        self.info = D.setup(self.device)
        self.precision = resolve_precision(self.cfg.train.precision, self.device)
        self.clips = self.cfg.data.clip_length > 0
        self.classes = list(self.cfg.data.classes)
        self.class_names = list(self.cfg.data.class_names)
        self._check_recipe()
        self.run_dir = Path(run_dir) if run_dir else None  # None: fit() makes train.out_dir/<recipe>-<time>
        self.main = self.info.is_main
        self._datasets = datasets
        self.progress = Progress()
        self.model: SegmentationModel | None = None
        self.metrics: dict[str, float] = {}

    # -- set-up -----------------------------------------------------------------------------------
    def _check_recipe(self) -> None:
        # ranges and per-stage rules are checked when the recipe is loaded (samfx.config.recipe)
        if len(self.classes) != len(self.class_names):
            raise RecipeError(f"data.class_names: {len(self.class_names)} names for {len(self.classes)} classes")

    def _build(self) -> None:

        train, data = self.cfg.train, self.cfg.data
        seed_everything(train.seed)
        set_deterministic(train.deterministic)
        self.model = build_model(self.recipe, self.registry).to(self.device)
        stage_losses(self.model, self.recipe, self.registry)  # a bad loss option fails before the folder is written
        if self.device.type == "cuda":
            # every batch has the same S x S shape; autotuning may pick different kernels run to run
            torch.backends.cudnn.benchmark = not train.deterministic
        if train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if train.activation_checkpointing:
            self.model.image_encoder.set_activation_checkpointing(True)   # encoders without it refuse
        image_size = self.model.image_size
        if self._datasets is not None:
            train_ds, val_ds = self._datasets["train"], self._datasets.get("val")
        else:
            train_ds = open_split(self.recipe, self.registry, data.train_split, image_size, train=True)
            val_ds, missing = open_val_split(self.recipe, self.registry, data.val_split, image_size, self.clips)
            if missing:
                self._say(f"note: {missing}; selecting checkpoints by train/loss")
        self.train_ds = EpochSeeded(train_ds, train.seed)
        self.val_ds = val_ds
        self.sampler = ResumableBatchSampler(len(self.train_ds), data.batch_size,
                                             train.seed, shuffle=True, drop_last=True,
                                             rank=self.info.rank, world_size=self.info.world_size)
        check_forward(self.model, self.classes, self.device, "train")  # after the data's own checks, before training

    @property
    def _built(self) -> SegmentationModel:
        assert self.model is not None, "fit() builds the model first"
        return self.model

    @property
    def _folder(self) -> Path:
        assert self.run_dir is not None, "fit() names the run folder first"
        return self.run_dir

    def _restore(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Weights and position from last.pt (already checked by rundir.claim); returns its train_state."""
        ckpt.restore_weights(self._built, obj["model"], self._folder / rundir.LAST,
                             "restore last.pt from a copy, or start a new run")
        self.progress = Progress(**obj["progress"])
        train_state: dict[str, Any] = obj["train_state"]
        return train_state

    # -- main loop ------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Run (or continue) every stage; returns the metrics.json content.

        Rank 0 holds the run folder's lock (samfx.engine.run.lock) for the whole call; the folder, last.pt
        and the recipe (against the run's) are checked before anything in the folder is written.
        Ctrl-C / SIGTERM raise :class:`Interrupted` with last.pt written (samfx.engine.train.interrupt)."""
        with RunSession(self.run_dir, self.recipe, self.resume) as self.run:
            self.stop = self.run.stop
            try:
                return self._fit()
            except Interrupted as exc:
                raise exc.explain(self.run.run_dir) from None
            except Exception as exc:
                if not self.stop.pending:
                    raise
                raise Interrupted(self.stop.pending).explain(self.run.run_dir) from exc  # e.g. a killed worker

    def _fit(self) -> dict[str, Any]:
        obj = self.run.claim()
        self.run_dir = self.run.run_dir
        self._build()  # opens the data: only once the folder has passed its checks
        state = None
        if self.resume:
            assert obj is not None, "claim() reads last.pt when resuming"
            state = self._restore(obj)
        del obj
        self.run.prepare(self.registry, self.plugin_versions)
        self.log = RunLog(self.run_dir if self.main else None,
                          resume_step=self.progress.global_step if self.resume else None)
        self.run.callback(self.log.close)
        total = run_steps(self.cfg.train.stages, self.sampler.batches_per_epoch(), self.cfg.train.grad_accum)
        self.clock = RunClock(total, self.progress.global_step)  # the progress line's whole-run ETA
        self.callbacks.insert(0, RunEstimate(self._say))  # a long run's estimate, once (samfx.engine.train.estimate)
        if self.progress.finished:
            self._say(f"{self.run_dir}: run already finished; nothing to do")
        stages = self.cfg.train.stages
        while not self.progress.finished and self.progress.stage < len(stages):
            self._run_stage(self.progress.stage, state)
            state = None
            p = self.progress
            p.stage, p.epoch, p.batch, p.step, p.best = p.stage + 1, 0, 0, 0, None
            p.finished = p.stage >= len(stages)
            self.run.save_last(self._built, p)
        out = self._write_metrics()
        # ranks leave together: a rank that tore down its gloo group while rank 0 was still writing
        # aborted once ("terminate called without an active exception")
        D.barrier()
        return out

    def _run_stage(self, index: int, state: dict[str, Any] | None) -> None:
        run, p = self._start_stage(index, state), self.progress
        loader = self._stage_loader(index)
        self.stop.deferring = True  # a stop signal waits for the step boundary (samfx.engine.train.interrupt)
        while p.epoch < run.plan.epochs and not run.done(p):
            epoch = p.epoch
            self._train_epoch(run, loader, epoch)
            self._end_epoch(run, epoch, done=run.done(p))
            for cb in self.callbacks:
                cb(self, "epoch")
            if signum := self.stop.agreed():  # came during validation or at the stage's last step
                raise Interrupted(signum, saved_step=p.global_step)
        self.stop.deferring = False
        if self.main:
            self.log.curves()
            if self.val_ds is not None and not self.clips and self.cfg.eval.overlays > 0:
                self._overlays(run.st.name)

    def _start_stage(self, index: int, state: dict[str, Any] | None) -> StageRun:
        """Stage `index`'s plan (samfx.engine.train.stage) and step module; `state` (resuming inside the stage)
        also restores this rank's RNG state."""
        st, model = self.cfg.train.stages[index], self._built
        plan = plan_stage(model, self.recipe, self.registry, index, self.sampler.batches_per_epoch(),
                          self.precision, self.device, state)
        self.optimizer = plan.opt  # for callbacks / inspection
        if state is not None:
            rngs = state["rng"]
            set_rng_state(rngs[self.info.rank] if len(rngs) == self.info.world_size else rngs[0])
        step_mod = build_step(model, self.classes, plan.loss_fn, st, clips=self.clips, device=self.device,
                              compile=self.cfg.train.compile)
        batch_to_device: Callable[[dict[str, Any], torch.device], tuple[torch.Tensor | None, ...]] = (
            clip_batch_to_device if self.clips else to_device)
        self._say(f"stage {index + 1}/{len(self.cfg.train.stages)} '{st.name}': "
                  f"{sum(q.numel() for q in plan.params):,} trainable parameters, {plan.epochs} epoch(s), "
                  f"{plan.total} steps, {self.precision} on {self.device}")
        return StageRun(index, st, plan, step_mod, batch_to_device)

    def _stage_loader(self, index: int) -> DataLoader[Any]:
        """One loader per stage: workers persist across epochs (the sampler sends each item's epoch)."""
        workers = self.cfg.data.num_workers
        return DataLoader(self.train_ds, batch_sampler=self.sampler, collate_fn=collate, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=self.device.type == "cuda",
                          worker_init_fn=ignore_in_worker,
                          generator=torch.Generator().manual_seed(derive_seed("loader", self.cfg.train.seed, index)))

    def _train_epoch(self, run: StageRun, loader: DataLoader[Any], epoch: int) -> None:
        """Epoch `epoch` from the sampler's position (mid-epoch when resuming) until its end or the stage's
        last step; raises Interrupted at a step boundary when asked to stop."""
        p = self.progress
        self.train_ds.set_epoch(epoch)
        self.sampler.set_epoch(epoch, skip=p.batch)
        self._built.train()
        batches = min(len(self.sampler), (run.plan.total - p.step) * run.plan.accum)  # max_steps may end it early
        with train_bar(batches, f"{run.st.name} epoch {epoch + 1}/{run.plan.epochs}", self._interactive(),
                       self.clock, lambda: p.global_step) as advance:
            values = StepValues()
            read_back = partial(self._read_back, run, values, advance)
            for batch in start_workers(loader):
                last_in_group = self._micro_batch(run, batch, values, epoch)
                advance()
                if last_in_group and self._optimizer_step(run, values, epoch, read_back):
                    break
            read_back()

    def _read_back(self, run: StageRun, values: StepValues, advance: Callable[..., None]) -> None:
        """Account every pending loss / gradient norm; stop on the first non-finite one."""
        p = self.progress
        for v in values.drain():
            if not math.isfinite(v.value):
                self._stop(f"{v.what} is {v.value}", run.index, run.st, v.epoch, v.step)
            if v.what == "loss":
                p.loss_sum += v.value
                p.loss_count += 1
                p.window_sum += v.value
                p.window_count += 1
                advance(0, loss=v.value)
            elif v.what.startswith("aux/"):  # a prompt generator's own loss (Prompts.aux_losses)
                p.add_aux(v.what, v.value)

    def _micro_batch(self, run: StageRun, batch: dict[str, Any], values: StepValues, epoch: int) -> bool:
        """Forward and backward of one micro-batch, its loss divided by the size of its accumulation group
        (DDP syncs gradients on the group's last only); True when it completes the group."""
        p, plan = self.progress, run.plan
        inputs = run.batch_to_device(batch, self.device)
        group_start = p.batch - p.batch % plan.accum
        group = min(plan.accum, plan.per_epoch - group_start)
        last_in_group = p.batch + 1 - group_start == group
        sync = contextlib.nullcontext()
        if D.active() and not last_in_group:
            sync = run.step_mod.no_sync()  # type: ignore[operator]  # DDP-wrapped when D.active()
        with sync:
            with autocast(self.precision, self.device), running(f"train.stages.{run.index} '{run.st.name}'"):
                loss, _, aux = run.step_mod(*inputs)
            values.add("loss", D.all_reduce_mean(loss.detach()), epoch, p.step + 1)
            for name, value in aux.items():
                values.add(f"aux/{name}", D.all_reduce_mean(value), epoch, p.step + 1)
            scaled = loss / group
            (plan.scaler.scale(scaled) if plan.scaler is not None else scaled).backward()
        p.batch += 1
        return last_in_group

    def _optimizer_step(self, run: StageRun, values: StepValues, epoch: int, read_back: Callable[[], None]) -> bool:
        """The optimizer step closing an accumulation group, then the step log, callbacks and, every
        ``save_every`` steps or on a stop signal, last.pt; True when it was the stage's last step."""
        p, plan = self.progress, run.plan
        lr = apply_gradients(plan, self.cfg.train.grad_clip, values, epoch, p.step + 1)
        p.step += 1
        p.global_step += 1
        if p.step % max(1, self.cfg.train.log_every) == 0:
            read_back()
            self.log.log({"train/step_loss": p.window_sum / p.window_count, "train/lr": lr, **p.take_aux()},
                         p.global_step, run.st.name, epoch, p.step)
            p.window_sum, p.window_count = 0.0, 0
        for cb in self.callbacks:
            cb(self, "step")
        if run.done(p):
            return True
        signum = self.stop.agreed()
        save_every = self.cfg.train.save_every
        if signum or (save_every and p.step % save_every == 0):
            read_back()
            self.run.save_last(self._built, p, plan.opt, plan.sched, plan.scaler)
        if signum:
            raise Interrupted(signum, saved_step=p.global_step)
        return False

    def _end_epoch(self, run: StageRun, epoch: int, done: bool) -> None:
        p, st, plan = self.progress, run.st, run.plan
        metrics = {"train/loss": p.loss_sum / max(1, p.loss_count)}
        p.epoch, p.batch, p.loss_sum, p.loss_count = epoch + 1, 0, 0.0, 0
        val_every = max(1, self.cfg.train.val_every)
        if self.val_ds is not None and ((epoch + 1) % val_every == 0 or epoch + 1 >= plan.epochs or done):
            metrics.update(self.validate(plan.loss_fn))
        self.metrics = metrics
        self.log.log(metrics, p.global_step, st.name, epoch, p.step)
        # without a validation split, val/* selection falls back to train/loss; epochs skipped by
        # val_every leave best.pt alone
        name = st.select_metric if self.val_ds is not None else "train/loss"
        value = metrics.get(name)
        is_best = value is not None and (p.best is None or SELECT[name](value, p.best["value"]) != p.best["value"])
        if is_best:
            p.best = {"metric": name, "value": value, "epoch": epoch, "step": p.step, "global_step": p.global_step}
            if self.main:
                obj = ckpt.make(self._built, self.recipe, progress=asdict(p), metric=dict(p.best, stage=st.name))
                best = rundir.best_name(self.cfg.train.checkpoint_format)
                ckpt.save(obj, self._folder / best)
        p.history = [h for h in p.history if h["stage"] != st.name] + [
            {"stage": st.name, "index": run.index, "best": p.best, "last": metrics, "epochs_done": p.epoch,
             "steps_done": p.step}]
        self.run.save_last(self._built, p, plan.opt, plan.sched, plan.scaler)
        if self.main:
            self._write_metrics()
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "/dice_" not in k)
        self._say(f"  {st.name} epoch {epoch + 1}/{plan.epochs} step {p.step}: {shown}"
                  + ("  (best)" if is_best else ""))

    def _stop(self, what: str, index: int, st: StageSection, epoch: int, step: int) -> None:
        raise nonfinite_error(what, f"train.stages.{index} '{st.name}' epoch {epoch + 1} step {step}",
                              self._folder / rundir.LAST, self.precision)

    # -- validation -------------------------------------------------------------------------------------
    def validate(self, loss_fn: nn.Module | None = None) -> dict[str, float]:
        """Validation metrics (samfx.engine.eval.validation): images, or whole sequences for clip training."""

        assert self.val_ds is not None, "no validation split"
        if self.clips:
            return validate_sequences(self._built, self.val_ds, self.classes, self.class_names, self.device,
                                      self.precision)
        return validate_images(self._built, self.val_ds, self.classes, self.class_names, self.device,
                               self.precision, Batching(self.cfg.eval.batch_size, self.cfg.data.num_workers), loss_fn)

    def _overlays(self, stage_name: str) -> None:

        assert self.val_ds is not None
        write_overlays(self._built, self.val_ds, self.classes, self._folder / "overlays" / rundir.safe_name(stage_name),
                       self.device, self.precision, self.cfg.eval.overlays)

    # -- output -------------------------------------------------------------------------------------------
    def _write_metrics(self) -> dict[str, Any]:
        p = self.progress
        out = {"run": str(self.run_dir), "finished": p.finished, "global_step": p.global_step,
               "stages": p.history, "last": self.metrics}
        if self.main:
            write_json(self._folder / "metrics.json", out)
        return out

    def _say(self, text: str) -> None:
        if self.main and not self.quiet:
            print(text, flush=True)

    def _interactive(self) -> bool:
        """Progress bars only on rank 0's interactive console."""
        from rich.console import Console

        return self.main and not self.quiet and Console(stderr=True).is_terminal
