"""A plugin's own exceptions: one line naming component and plugin, traceback under SAMFX_DEBUG=1
(issue #20, item 1)."""
from __future__ import annotations

import pytest
import torch

from samfx.config.recipe import load_recipe
from samfx.contracts.attribution import running
from samfx.contracts.errors import ComponentError, PluginFailure
from samfx.contracts.plugins import load_plugins
from samfx.model.build import build_model
from tests.conftest import ROOT, run_samfx
from tests.test_plugins import fake_dist

TINY = ROOT / "tests" / "recipes" / "tiny_sam.yaml"

FLAKY = """
from dataclasses import dataclass

from samfx import hookimpl
from samfx.contracts.errors import ComponentError


@dataclass
class FlakyConfig:
    fail: str = "no"   # build | bad_config | forward | forward_config | interrupt | no


def build(config, context):
    from samfx.contracts.interfaces import PromptGenerator, Prompts

    if config.fail == "build":
        raise ValueError("tokens must be a list\\nsecond line")
    if config.fail == "bad_config":
        raise ComponentError("tokens: 0 must be at least 1")

    class Flaky(PromptGenerator):
        def forward(self, ctx):
            if config.fail == "forward":
                raise ValueError("expected 3 classes, got 2")
            if config.fail == "forward_config":
                raise ComponentError("classes: 2 but the batch asks for class 3")
            if config.fail == "interrupt":
                raise KeyboardInterrupt
            b, c, h, w = ctx.image_embedding.shape
            return Prompts(ctx.image_embedding.new_zeros(b, 0, c), ctx.image_embedding.new_zeros(b, c, h, w))

    return Flaky()


@hookimpl
def samfx_register(registry):
    registry.add("prompt_generator", "flaky", build, schema=FlakyConfig)
"""


def _flaky_model(fail: str):
    ns: dict = {}
    exec(compile(FLAKY, "flaky_mod.py", "exec"), ns)
    plugin = type("FlakyPlugin", (), {"samfx_register": staticmethod(ns["samfx_register"])})()
    registry = load_plugins(extra={"flaky": plugin}, strict=False).registry
    recipe = load_recipe(TINY, [f"model.prompt={{name: flaky, fail: {fail}}}"], registry)
    return build_model(recipe, registry, load_checkpoint=False)


def _one_line(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_factory_exception_is_one_line_naming_plugin_and_component(tmp_path):
    env = fake_dist(tmp_path, "flaky", FLAKY)
    res = run_samfx("show", str(TINY), "model.prompt={name: flaky, fail: build}", env=env)
    assert _one_line(res) == (
        "error: prompt 'flaky': plugin 'flaky', prompt_generator 'flaky/flaky' failed while building: "
        "ValueError: tokens must be a list; set SAMFX_DEBUG=1 for the traceback")
    res = run_samfx("show", str(TINY), "model.prompt={name: flaky, fail: build}", env={**env, "SAMFX_DEBUG": "1"})
    assert res.returncode == 2
    assert "Traceback (most recent call last)" in res.stderr and 'flaky_mod.py", line' in res.stderr
    assert res.stderr.rstrip().splitlines()[-1].startswith("error: prompt 'flaky': plugin 'flaky'")


def test_component_error_from_a_factory_keeps_the_plugins_words(tmp_path):
    env = fake_dist(tmp_path, "flaky", FLAKY)
    res = run_samfx("show", str(TINY), "model.prompt={name: flaky, fail: bad_config}", env=env)
    assert _one_line(res) == ("error: prompt 'flaky': plugin 'flaky', prompt_generator 'flaky/flaky': "
                              "tokens: 0 must be at least 1")


def test_forward_exception_names_the_component():
    model = _flaky_model("forward")
    with pytest.raises(PluginFailure) as err:
        with running("train.stages.0 'clicks'"):
            model(torch.zeros(1, 3, 64, 64))
    assert str(err.value) == ("train.stages.0 'clicks': plugin 'flaky', prompt_generator 'flaky/flaky' failed "
                              "while running: ValueError: expected 3 classes, got 2; set SAMFX_DEBUG=1 for the "
                              "traceback")
    assert isinstance(err.value.__cause__, ValueError)


def test_component_error_from_a_forward_is_prefixed():
    model = _flaky_model("forward_config")
    with pytest.raises(ComponentError) as err:
        with running("show"):
            model(torch.zeros(1, 3, 64, 64))
    assert str(err.value) == ("show: plugin 'flaky', prompt_generator 'flaky/flaky': "
                              "classes: 2 but the batch asks for class 3")


def test_interrupts_and_samfx_bugs_pass_through():
    model = _flaky_model("interrupt")
    with pytest.raises(KeyboardInterrupt):
        with running("x"):
            model(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ZeroDivisionError):  # not raised in a component's code: not blamed on a plugin
        with running("x"):
            _ = 1 / 0


# -- item 2: an unknown name while a plugin failed to load says so, through the CLI -------------------
def test_unknown_component_names_the_plugin_that_failed_to_load(tmp_path):
    env = fake_dist(tmp_path, "myplug", "def broken(:\n")
    res = run_samfx("show", str(TINY), "model.prompt.name=box_from_coarse", env=env)
    assert _one_line(res) == (
        "error: model.prompt.name (command line): unknown prompt_generator 'box_from_coarse'; nearest registered: "
        "boxes (see `samfx list-plugins`); plugin 'myplug', which failed to load: SyntaxError: invalid syntax "
        "(myplug_mod.py, line 1) (run `samfx doctor` for the traceback), may provide it")
