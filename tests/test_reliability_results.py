"""Results that say what they are: an evaluation per prompt (and the report naming it), plugin errors in
eval and validation as one line, 0/255 masks with ``--labels 255=1``, the training progress line's
whole-run ETA and Ctrl-C printed as a stop rather than an error."""
from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from samfx.contracts.errors import PluginFailure
from samfx.contracts.plugins import load_plugins
from samfx.engine.testing import ToyPlugin
from tests.toy_runs import train_toy

FLAKY = """
from samfx import hookimpl


def build(config, context):
    from samfx.contracts.interfaces import PromptGenerator

    class Flaky(PromptGenerator):
        def forward(self, ctx):
            raise ValueError("expected 3 classes, got 2")

    return Flaky()


@hookimpl
def samfx_register(registry):
    registry.add("prompt_generator", "flaky", build)
"""


@pytest.fixture(scope="module")
def toy_run(plugins, tmp_path_factory):
    return train_toy(tmp_path_factory.mktemp("toy") / "run", plugins, "train.stages.0.max_steps=2")


@pytest.fixture(scope="module")
def flaky_registry():
    ns: dict = {}
    exec(compile(FLAKY, "flaky_mod.py", "exec"), ns)
    flaky = type("FlakyPlugin", (), {"samfx_register": staticmethod(ns["samfx_register"])})()
    return load_plugins(extra={"toy": ToyPlugin(), "flaky": flaky}, strict=False).registry


# -- 1: one evaluation file per prompt; the report finds and names it ------------------------------------
def test_eval_with_another_prompt_keeps_the_default_file_and_the_report_names_the_prompt(plugins, toy_run):
    from samfx.engine.eval.evaluate import evaluate
    from samfx.report.collect import find_eval
    from samfx.report.write import write_report

    default = evaluate(toy_run, split="val", registry=plugins.registry, limit=2)
    assert Path(default["written"]).name == "eval-val.json" and default["prompt"] == "toy_class"
    other = evaluate(toy_run, split="val", prompt="none", registry=plugins.registry, limit=2)
    assert Path(other["written"]).name == "eval-val-none.json" and other["prompt"] == "none"
    assert json.loads((toy_run / "eval-val.json").read_text())["prompt"] == "toy_class"  # not overwritten
    assert (toy_run / "overlays" / "eval-val-none").is_dir()

    assert find_eval(toy_run, "val") == toy_run / "eval-val-none.json"  # the newest of the split
    assert find_eval(toy_run, "val", "toy_class") == toy_run / "eval-val.json"
    assert find_eval(toy_run, None, "none") == toy_run / "eval-val-none.json"
    html = write_report(toy_run, split="val", registry=plugins.registry)  # what `samfx eval --report` does
    assert html == toy_run / "report-val-none.html"
    text = html.read_text()
    assert "(val, prompt none)" in text and "none (chosen with --prompt)" in text
    html = write_report(toy_run, split="val", prompt="toy_class", registry=plugins.registry)
    assert html == toy_run / "report-val.html"
    assert "toy_class (the checkpoint&#x27;s default)" in html.read_text() or \
        "toy_class (the checkpoint's default)" in html.read_text()


def test_report_of_a_prompt_never_evaluated_says_how_to_evaluate_it(toy_run):
    from samfx.contracts.errors import SamfxError
    from samfx.report.collect import find_eval

    with pytest.raises(SamfxError, match=r"no evaluation of split 'val' and prompt 'clicks' yet "
                                         r"\(eval-val-clicks.json\); run `samfx eval .* --split val --prompt clicks"):
        find_eval(toy_run, "val", "clicks")


# -- 2: a plugin's exception in eval and validation is one line naming it ---------------------------------
def test_plugin_exception_during_eval_names_plugin_and_component(toy_run, flaky_registry):
    from samfx.engine.eval.evaluate import evaluate

    with pytest.raises(PluginFailure) as err:
        evaluate(toy_run, split="val", prompt="flaky", registry=flaky_registry, write=False, limit=1)
    assert str(err.value) == ("eval 'val' prompt 'flaky': plugin 'flaky', prompt_generator 'flaky/flaky' failed "
                              "while running: ValueError: expected 3 classes, got 2; set SAMFX_DEBUG=1 for the "
                              "traceback")
    assert isinstance(err.value.__cause__, ValueError)


def test_plugin_exception_during_validation_names_plugin_and_component(toy_run, flaky_registry):
    from samfx.data.datasets import ImageDataset
    from samfx.engine.eval.validation import Batching, validate_images, write_overlays
    from samfx.engine.run import checkpoints as ckpt
    from samfx.engine.run.loaders import store_path
    from samfx.model.build import build_extra

    model, recipe, _ = ckpt.load_model(toy_run / "last.pt", flaky_registry, torch.device("cpu"))
    model.prompt_generators["flaky"] = build_extra(model, "prompt_generator", {"name": "flaky"}, "x", flaky_registry)
    model.use_prompt("flaky")
    ds = ImageDataset(store_path(recipe.typed.data.source, flaky_registry, "data.source"), "val", model.image_size)
    with pytest.raises(PluginFailure, match=r"^validation: plugin 'flaky', prompt_generator 'flaky/flaky' failed "
                                            r"while running: ValueError: expected 3 classes, got 2;"):
        validate_images(model, ds, [1, 2, 3], ["LV", "MYO", "LA"], torch.device("cpu"), "fp32", Batching(2))
    with pytest.raises(PluginFailure, match=r"^stage-end overlays: plugin 'flaky', prompt_generator 'flaky/flaky'"):
        write_overlays(model, ds, [1, 2, 3], toy_run / "flaky-overlays", torch.device("cpu"), "fp32", 1)


# -- 3: --labels 255=1 imports 0/255 masks ----------------------------------------------------------------
def test_labels_255_keeps_background_0(tmp_path):
    from PIL import Image

    from samfx.data.importers.labelmap import build_label_map
    from samfx.data.store import open_store, read_sample
    from tests.cli_inprocess import cli

    lm = build_label_map(["255=1"], None)
    assert lm.apply(np.array([0, 255], np.uint8), "m").tolist() == [0, 1]
    assert build_label_map(["0,255=1,2"], None).apply(np.array([0, 255], np.uint8), "m").tolist() == [1, 2]
    for d in ("img", "gt"):
        (tmp_path / d).mkdir()
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 5:20] = 255
    for i in range(3):
        Image.fromarray(np.full((20, 30), 40 * i, np.uint8)).save(tmp_path / "img" / f"p{i}.png")
        Image.fromarray(m).save(tmp_path / "gt" / f"p{i}_mask.png")
    out = tmp_path / "my.h5"
    r = cli("data", "folder", tmp_path / "img", tmp_path / "gt", "--out", out, "--mask-suffix", "_mask",
            "--labels", "255=1")
    assert r.exit_code == 0, r.output
    with open_store(out) as f:
        _, label = read_sample(f, "p0")
    assert sorted(np.unique(label).tolist()) == [0, 1] and int((label == 1).sum()) == 75


# -- 4: the progress line and the stop message -------------------------------------------------------------
def test_run_clock_counts_every_stage_and_gives_a_whole_run_eta():
    from types import SimpleNamespace as NS

    from samfx.engine.run.log import RunClock, run_steps, stage_steps

    stages = [NS(epochs=2, max_steps=None), NS(epochs=3, max_steps=4), NS(epochs=0, max_steps=5)]
    assert stage_steps(2, None, 5, 2) == 6 and run_steps(stages, 5, 2) == 6 + 4 + 5
    clock = RunClock(total=15, start=5, began=100.0)  # resumed at global step 5
    assert clock.eta(5, now=100.0) is None
    assert clock.text(5, now=100.0) == "run 5/15 steps, ETA -:--:--"
    assert clock.eta(7, now=110.0) == pytest.approx(40.0)  # 2 steps in 10 s, 8 left
    assert clock.text(7, now=110.0) == "run 7/15 steps, ETA 0:00:40"


def test_progress_line_has_no_nan_loss_and_shows_the_run_eta():
    from rich.console import Console

    from samfx.engine.run.log import RunClock, train_bar

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system=None)
    step = [0]
    with train_bar(4, "main epoch 1/2", True, RunClock(total=8), lambda: step[0], console=console) as advance:
        advance()
        step[0] = 1
        advance(0, loss=0.25)
    text = buf.getvalue()
    assert "nan" not in text
    assert "run 0/8 steps" in text or "run 1/8 steps" in text


def test_interrupted_training_prints_the_stop_without_error_prefix(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from samfx import api
    from samfx.cli.main import app
    from samfx.engine.train.interrupt import Interrupted

    def stopped(*args, **kwargs):
        raise Interrupted(signal.SIGINT, saved_step=3).explain(tmp_path)

    monkeypatch.setattr(api, "train", stopped)
    r = CliRunner().invoke(app, ["train", str(Path(__file__).parent / "recipes" / "toy.yaml"), "--out",
                                 str(tmp_path), "--quiet"])
    assert r.exit_code == 130, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == [f"interrupted (SIGINT) after step 3, saved in {tmp_path / 'last.pt'}; continue with "
                     f"`samfx train --resume {tmp_path}`"]
    assert os.environ.get("SAMFX_DEBUG") != "1"
