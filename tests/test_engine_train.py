"""Trainer pieces and a tiny in-process run: run folder, stages, schedule, sampler, seeding."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from samfx.config.recipe import load_recipe
from samfx.config.schema import ScheduleSection
from samfx.contracts.errors import RecipeError, SamfxError
from samfx.engine.run.seeding import EpochSeeded
from samfx.engine.testing import ToyShapes, toy_plugins
from samfx.engine.train.optim import lr_factor
from samfx.engine.train.sampler import ResumableBatchSampler

TOY = Path(__file__).resolve().parent / "recipes" / "toy.yaml"


@pytest.fixture(scope="module")
def plugins():
    return toy_plugins()


def _trainer(plugins, run_dir, *overrides, **kw):
    from samfx.engine.train.trainer import Trainer

    recipe = load_recipe(TOY, list(overrides), plugins.registry)
    return Trainer(recipe, run_dir, registry=plugins.registry, plugin_versions=plugins.versions(), quiet=True, **kw)


def test_run_folder_contents(plugins, tmp_path):
    run = tmp_path / "run"
    tr = _trainer(plugins, run)
    result = tr.fit()
    assert yaml.safe_load((run / "recipe.yaml").read_text()) == tr.recipe.config
    versions = json.loads((run / "versions.json").read_text())
    assert set(versions) >= {"samfx", "torch", "python", "plugins"} and versions["plugins"] == {"toy": "unknown"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result)) and metrics["finished"] is True
    (stage,) = metrics["stages"]
    assert stage["stage"] == "all" and stage["steps_done"] == 4 and stage["best"]["metric"] == "val/dice"
    assert set(stage["last"]) == {"train/loss", "val/loss", "val/dice", "val/dice_LV", "val/dice_MYO", "val/dice_LA"}
    with open(run / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["global_step"] for r in rows if r["key"] == "train/step_loss"] == ["1", "2", "3", "4"]
    lrs = [float(r["value"]) for r in rows if r["key"] == "train/lr"]
    # warmup 2 steps then cosine over the remaining 2: 0.005, 0.01, 0.01, 0.005
    assert lrs == pytest.approx([0.005, 0.01, 0.01, 0.005])
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((run / "overlays" / "all").glob("*.png"))) == 2
    assert list((run / "tb").glob("events.out.tfevents.*"))
    last = torch.load(run / "last.pt", weights_only=True)
    best = torch.load(run / "best.pt", weights_only=True)
    assert last["format"] == best["format"] == "samfx" and last["recipe"] == tr.recipe.config
    assert best["metric"]["stage"] == "all" and "train_state" not in best
    assert not any(p.name.endswith(".tmp") for p in run.iterdir())


def test_stages_train_only_their_parameters(plugins, tmp_path):
    seen = {}

    def snap(trainer, event):
        if event == "epoch":
            st = trainer.progress.stage
            seen[st] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            group = trainer.optimizer.param_groups[0]["params"]
            seen[f"opt{st}"] = sum(p.numel() for p in group)

    stages = [{"name": "decoder", "trainable": ["mask_decoder"], "epochs": 1, "loss": {"name": "toy_bce"},
               "select_metric": "train/loss"},
              {"name": "prompt", "trainable": ["prompt"], "epochs": 1, "loss": {"name": "toy_bce"},
               "optimizer": {"name": "sgd", "lr": 0.1}, "select_metric": "val/loss"}]
    tr = _trainer(plugins, tmp_path / "r2", f"train.stages={json.dumps(stages)}", callbacks=[snap])
    tr.fit()
    s0, s1 = seen[0], seen[1]
    decoder = [k for k in s0 if k.startswith("mask_decoder.")]
    prompt = [k for k in s0 if k.startswith("prompt_generators.")]
    encoder = [k for k in s0 if k.startswith("image_encoder.")]
    assert seen["opt0"] == sum(s0[k].numel() for k in decoder)
    assert seen["opt1"] == sum(s0[k].numel() for k in prompt)
    from samfx.engine.run.seeding import seed_everything
    from samfx.model.build import build_model

    seed_everything(7)  # the recipe's seed: the same initial weights as the run
    init = build_model(tr.recipe, plugins.registry).state_dict()
    # stage 1 changed the decoder only
    assert all(torch.equal(init[k], s0[k]) for k in prompt + encoder)
    assert not all(torch.equal(init[k], s0[k]) for k in decoder)
    # stage 2 changed the prompt only
    assert all(torch.equal(s0[k], s1[k]) for k in decoder + encoder)
    assert not all(torch.equal(s0[k], s1[k]) for k in prompt)
    hist = json.loads((tmp_path / "r2" / "metrics.json").read_text())["stages"]
    assert [h["stage"] for h in hist] == ["decoder", "prompt"]
    assert [h["best"]["metric"] for h in hist] == ["train/loss", "val/loss"]


def test_lr_schedules():
    cos = ScheduleSection(name="cosine", warmup_steps=2, step_size=1, gamma=0.5, min_lr=0.001)
    assert [lr_factor(s, cos, 6, 0.01) for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, cos, 6, 0.01) == pytest.approx(1.0)
    assert lr_factor(6, cos, 6, 0.01) == pytest.approx(0.1)  # min_lr / lr at the end
    assert lr_factor(4, cos, 6, 0.01) == pytest.approx(0.1 + 0.9 * 0.5)
    step = ScheduleSection(name="step", warmup_steps=0, step_size=3, gamma=0.5, min_lr=0.0)
    assert [lr_factor(s, step, 10, 1.0) for s in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    with pytest.raises(RecipeError, match="unknown schedule 'linear'; use constant, cosine or step"):
        lr_factor(5, dataclasses.replace(step, name="linear"), 10, 1.0)


def test_sampler_resume_and_sharding():
    s = ResumableBatchSampler(10, 4, seed=3)
    s.set_epoch(0)
    full = list(s)
    assert len(full) == 2 and all(len(b) == 4 for b in full)  # the incomplete last batch is dropped
    s.set_epoch(0, skip=1)
    assert list(s) == full[1:] and len(s) == 1
    s.set_epoch(1)
    assert list(s) != full
    ranks = [ResumableBatchSampler(10, 4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(0)
    parts = [list(r) for r in ranks]
    assert [a + b for a, b in zip(*parts)] == full
    with pytest.raises(SamfxError, match="data.batch_size 5 is the global batch; it must be divisible by the 2"):
        ResumableBatchSampler(10, 5, seed=0, world_size=2)
    with pytest.raises(SamfxError, match=r"data.batch_size 8 is larger than the training split \(3 items\)"):
        ResumableBatchSampler(3, 8, seed=0)


def test_epoch_seeded_items_are_order_independent():
    ds = EpochSeeded(ToyShapes(6, 16, augment=True), seed=5)
    ds.set_epoch(2)
    a = ds[3]["image"]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    _ = ds[1]
    b = ds[3]["image"]
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched
    ds.set_epoch(3)
    assert not torch.equal(ds[3]["image"], a)


def test_recipe_errors(plugins, tmp_path):
    with pytest.raises(RecipeError, match="select_metric: unknown 'val/acc'; use val/dice, val/loss, train/loss"):
        _trainer(plugins, tmp_path, "train.stages.0.select_metric=val/acc")
    with pytest.raises(RecipeError, match="fp16 needs a CUDA device; use fp32 or bf16 on CPU"):
        _trainer(plugins, tmp_path, "train.precision=fp16")
    with pytest.raises(RecipeError, match=r"stages.0.area_change_weight: only applies to clip training; set "
                                          r"data.clip_length > 0 or remove it"):
        _trainer(plugins, tmp_path, "train.stages.0.area_change_weight=0.5")
    with pytest.raises(RecipeError, match="selects no parameters"):
        _trainer(plugins, tmp_path / "x", "train.stages.0.trainable=[adapters]").fit()


def test_resume_with_a_changed_recipe_is_refused(plugins, tmp_path):
    run = tmp_path / "run"
    _trainer(plugins, run, "train.stages.0.max_steps=1").fit()
    tr = _trainer(plugins, run, "train.stages.0.max_steps=1", "train.seed=8", resume=True)
    with pytest.raises(SamfxError, match=r"the recipe differs from the run's at train.seed: run has 7, now 8; "
                                         r"resume with the run's recipe"):
        tr.fit()
    # extending a stage is allowed
    tr = _trainer(plugins, run, "train.stages.0.max_steps=2", resume=True)
    assert tr.fit()["global_step"] == 1  # the run had finished; extending a finished run does nothing


def test_clip_batches_train_through_forward_clip(plugins, tmp_path):
    run = tmp_path / "clips"
    clip = ["data.clip_length=3", "data.train_split=test", "data.val_split=test", "data.batch_size=1"]
    tr = _trainer(plugins, run, *clip, "train.stages.0.max_steps=1")
    result = tr.fit()
    rows = list(csv.DictReader(open(run / "log.csv", newline="")))
    losses = [float(r["value"]) for r in rows if r["key"] == "train/step_loss"]
    assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0
    # validation ran on whole sequences: Dice per class, no val/loss
    assert set(result["last"]) == {"train/loss", "val/dice", "val/dice_LV", "val/dice_MYO", "val/dice_LA"}
    with pytest.raises(RecipeError, match="val/loss is not computed for clip training"):
        _trainer(plugins, tmp_path / "y", *clip, "train.stages.0.select_metric=val/loss")


def test_bf16_autocast_on_cpu_trains(plugins, tmp_path):
    result = _trainer(plugins, tmp_path / "bf16", "train.precision=bf16", "train.stages.0.max_steps=1",
                      "train.grad_clip=1.0", "eval.overlays=0").fit()
    assert result["global_step"] == 1 and math.isfinite(result["last"]["train/loss"])
    assert 0.0 <= result["last"]["val/dice"] <= 1.0
