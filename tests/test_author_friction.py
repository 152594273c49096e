"""What a third-party author of a temporal module and a loss ran into (video round 3), each pinned:
`samfx show` builds the losses, a failed build leaves no run folder, a factory that cannot be imported
points at SAMFX_DEBUG, `samfx eval` of a temporal model prints the sequence table with class names,
and load_run's prompt is the clip path's default too."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from samfx import hookimpl
from samfx.config.recipe import load_recipe
from samfx.contracts.errors import RecipeError, RegistryError, SamfxError
from samfx.contracts.plugins import load_plugins

TINY_SAM = Path(__file__).resolve().parent / "recipes" / "tiny_sam.yaml"


@dataclass
class GammaConfig:
    gamma: float = 1.0     # focusing exponent (> 0)


def _gamma_loss(cfg, ctx):
    if cfg.gamma <= 0:
        raise RecipeError(f"gamma_loss: gamma must be > 0, got {cfg.gamma}")
    return torch.nn.BCEWithLogitsLoss()


class AuthorPlugin:
    @hookimpl
    def samfx_register(self, registry):
        registry.add("loss", "gamma_loss", _gamma_loss, schema=GammaConfig, description="test")
        registry.add("loss", "ghost_loss", "no_such_module_for_samfx_tests:build", description="test")


@pytest.fixture(scope="module")
def author():
    return load_plugins(extra={"author": AuthorPlugin()})


def test_show_builds_each_stages_loss(author, monkeypatch):
    from samfx.contracts import plugins as pluginmanager
    from samfx.model.summary import summarize

    monkeypatch.setattr(pluginmanager, "_CACHE", author)
    ok = summarize(str(TINY_SAM), ["train.stages.0.loss={name: gamma_loss}"], check=False)
    assert ok["prompt_schedules"] == {"clicks": "first", "none": "every"}
    with pytest.raises(RecipeError, match=r"gamma_loss: gamma must be > 0, got 0.0"):
        summarize(str(TINY_SAM), ["train.stages.0.loss={name: gamma_loss, gamma: 0}"], check=False)


def test_a_failed_build_leaves_no_run_folder(author, tmp_path):
    from samfx.engine.train.trainer import Trainer

    recipe = load_recipe(TINY_SAM, ["train.stages.0.loss={name: gamma_loss, gamma: 0}"], author.registry)
    with pytest.raises(RecipeError, match="gamma must be > 0"):
        Trainer(recipe, tmp_path / "run", registry=author.registry, quiet=True).fit()
    assert not (tmp_path / "run").exists()
    out = tmp_path / "out"
    recipe = load_recipe(TINY_SAM, ["train.stages.0.loss={name: gamma_loss, gamma: 0}", f"train.out_dir={out}"],
                         author.registry)
    with pytest.raises(RecipeError):
        Trainer(recipe, registry=author.registry, quiet=True).fit()     # a folder named by the trainer
    assert (list(out.iterdir()) if out.exists() else []) == []


def test_a_factory_that_cannot_be_imported_points_at_samfx_debug(author):
    from samfx.model.build import build_extra

    with pytest.raises(RegistryError, match=r"loss 'author/ghost_loss': cannot import factory "
                                            r"'no_such_module_for_samfx_tests:build': ModuleNotFoundError: .*; "
                                            r"set SAMFX_DEBUG=1 for the traceback"):
        build_extra(None, "loss", {"name": "ghost_loss"}, "train.stages.0.loss", author.registry)


@pytest.fixture(scope="module")
def temporal_run(author, tmp_path_factory):
    from samfx.engine.train.trainer import Trainer

    run = tmp_path_factory.mktemp("temporal") / "run"
    recipe = load_recipe(TINY_SAM, ["model.temporal={name: stm, key_dim: 8, value_dim: 8, mask_channels: 4}",
                                    "data.clip_length=3", "data.batch_size=1", "train.stages.0.max_steps=1",
                                    "train.stages.0.select_metric=train/loss", "train.val_every=100",
                                    "eval.overlays=0", "eval.split=val"], author.registry)
    Trainer(recipe, run, registry=author.registry, quiet=True).fit()
    return run


def test_eval_of_a_temporal_model_prints_the_sequence_table_by_class_name(temporal_run, author, monkeypatch,
                                                                          capsys):
    from samfx import api
    from samfx.contracts import plugins as pluginmanager
    from samfx.engine.eval.evaluate import print_table

    monkeypatch.setattr(pluginmanager, "_CACHE", author)
    report = api.evaluate(temporal_run, split="val", prompt="none")
    seq = report["sequences"]
    names = ["LV", "MYO", "LA"]
    for row in seq["sequences"]:
        for key in ("dice", "dice_edes", "hd95", "hd95_edes", "hd95_inf"):
            assert list(row[key]) == names, key
    assert {f"{k}_{n}" for k in ("dice", "dice_edes", "hd95", "hd95_edes") for n in names} <= set(seq["summary"])
    assert not any(k.endswith(("_1", "_2", "_3")) for k in seq["summary"])
    print_table(report)
    out = capsys.readouterr().out
    assert "sequences, every frame (prompt none)" in out and "Dice ED/ES %" in out
    assert "LV-area jitter" in out and "EF error" in out


def test_load_runs_prompt_is_the_clip_paths_default(temporal_run, author):
    from samfx import api

    run = api.load_run(temporal_run, prompt="none", device="cpu", registry=author.registry)
    assert run.model.active_prompt == "none"
    frames = torch.rand(1, 2, 3, 64, 64)
    with torch.no_grad():
        out = run.model.forward_clip(frames, [1])       # clicks (the recipe's) would need labels
    assert out.logits.shape == (1, 2, 1, 64, 64)
    with pytest.raises(SamfxError, match="needs the labels"):
        run.model.forward_clip(frames, [1], prompt="clicks")
