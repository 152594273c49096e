"""A prompt generator's own training losses (Prompts.aux_losses): added to the loss, logged, refused in clips."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from samfx import hookimpl
from samfx.contracts.errors import SamfxError
from samfx.contracts.interfaces import BuildContext, PromptContext, Prompts
from samfx.engine.testing import ToyClassPrompt, ToyPlugin

TOY = Path(__file__).resolve().parent / "recipes" / "toy.yaml"


@dataclass
class AreaPromptConfig:
    weight: float = 1.0


class AreaPrompt(ToyClassPrompt):
    """toy_class prompts plus a regression of each query's target area that only its aux loss trains."""

    def __init__(self, dim: int, num_classes: int, weight: float):
        super().__init__(dim, num_classes)
        self.weight = weight
        self.area = nn.Parameter(torch.zeros(()))

    def forward(self, ctx: PromptContext) -> Prompts:
        prompts = super().forward(ctx)
        if ctx.targets is not None:
            prompts.aux_losses["area"] = self.weight * (self.area - ctx.targets.mean()) ** 2
        return prompts


class AreaPlugin:
    @hookimpl
    def samfx_register(self, registry) -> None:
        def build(cfg: AreaPromptConfig, ctx: BuildContext) -> AreaPrompt:
            return AreaPrompt(ctx.embed_dim, ctx.num_classes, cfg.weight)

        registry.add("prompt_generator", "area_prompt", build, schema=AreaPromptConfig, description="test")


@pytest.fixture(scope="module")
def plugins():
    from samfx.contracts.plugins import load_plugins

    return load_plugins(extra={"toy": ToyPlugin(), "area": AreaPlugin()})


def _recipe(plugins, *overrides: str):
    from samfx import api

    return api.load_recipe(TOY, ["model.prompt={name: area_prompt}", "train.stages.0.max_steps=2", *overrides],
                           registry=plugins.registry)


def test_aux_losses_are_added_to_the_stage_loss(plugins):
    from samfx import api
    from samfx.engine.testing import ToyBCE, ToyShapes
    from samfx.engine.train.steps import ImageStep

    model = api.build_model(_recipe(plugins), registry=plugins.registry)
    batch = [ToyShapes(2, 32)[i] for i in range(2)]
    images, labels = torch.stack([b["image"] for b in batch]), torch.stack([b["label"] for b in batch])
    loss_fn = ToyBCE()
    gen = model.prompt_generators["area_prompt"]
    with torch.no_grad():
        gen.area.fill_(0.5)
    torch.manual_seed(0)
    loss, _, aux = ImageStep(model, [1, 2], loss_fn)(images, labels)
    torch.manual_seed(0)
    targets, out = model.forward_classes(images, [1, 2], labels)
    plain = loss_fn(out.logits.float(), targets)
    assert set(aux) == {"area"} and not aux["area"].requires_grad
    assert float(aux["area"]) == pytest.approx(float((0.5 - targets.mean()) ** 2))
    assert float(loss.detach()) == pytest.approx(float(plain.detach()) + float(aux["area"]))
    loss.backward()
    assert gen.area.grad is not None and float(gen.area.grad) != 0.0


def test_trainer_optimizes_and_logs_aux_losses(plugins, tmp_path):
    from samfx import api
    from samfx.engine.run.checkpoints import load

    api.train(_recipe(plugins, "model.prompt.weight=2.0"), tmp_path / "run", registry=plugins.registry)
    with open(tmp_path / "run" / "log.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["key"] == "train/aux/area"]
    assert [r["global_step"] for r in rows] == ["1", "2"] and all(float(r["value"]) > 0 for r in rows)
    # only the aux loss reaches `area`: it moved from 0 towards the target areas
    area = load(tmp_path / "run" / "last.pt")["model"]["prompt_generators.area_prompt.area"]
    assert float(area) > 0.0


def test_clip_forward_refuses_aux_losses(plugins):
    from samfx import api

    model = api.build_model(_recipe(plugins), registry=plugins.registry)
    model.prompt_generators["area_prompt"].needs_targets = True  # clips give targets to such generators only
    frames = torch.rand(1, 2, 3, 32, 32)
    labels = torch.ones(1, 2, 32, 32, dtype=torch.long)
    with pytest.raises(SamfxError) as err:
        model.forward_clip(frames, [1], labels)
    assert str(err.value) == ("forward_clip: prompt 'area_prompt' returned auxiliary losses (area), which clip "
                              "training does not use yet; train it in an image stage (data.clip_length: 0)")


def test_resumed_run_logs_the_same_aux_values(plugins, tmp_path):
    """The aux log window is part of last.pt: a run stopped mid-window logs what an unstopped one does."""
    from samfx import api

    def rows(run):
        with open(run / "log.csv", newline="") as fh:
            return [(r["global_step"], r["value"]) for r in csv.DictReader(fh) if r["key"] == "train/aux/area"]

    recipe = api.load_recipe(TOY, ["model.prompt={name: area_prompt}", "train.log_every=3", "train.save_every=2"],
                             registry=plugins.registry)
    api.train(recipe, tmp_path / "whole", registry=plugins.registry)

    def stop_at_3(trainer, event):
        if event == "step" and trainer.progress.global_step == 3:
            raise KeyboardInterrupt  # after last.pt of step 2, inside the log window of steps 1-3

    with pytest.raises(KeyboardInterrupt):
        api.train(recipe, tmp_path / "stopped", registry=plugins.registry, callbacks=[stop_at_3])
    api.resume(tmp_path / "stopped", registry=plugins.registry)
    assert rows(tmp_path / "whole") == rows(tmp_path / "stopped") and len(rows(tmp_path / "whole")) >= 1
