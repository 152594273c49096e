"""A recipe that replaces `train.stages` loses the base's stage keys; show and train say what each stage
runs (issue #20, item 3)."""
from __future__ import annotations

import json

from tests.conftest import ROOT, run_samfx

TINY = ROOT / "tests" / "recipes" / "tiny_sam.yaml"


def test_replaced_stages_take_schema_defaults_and_show_prints_them(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {TINY}\ntrain:\n  stages:\n    - {{name: decoder, trainable: [mask_decoder]}}\n"
                     "    - {name: more, trainable: [mask_decoder], epochs: 3, max_steps: 7}\n")
    res = run_samfx("show", str(child), "--json")
    assert res.returncode == 0, res.stderr
    stages = json.loads(res.stdout)["stages"]
    # the base's stage had epochs 1, max_steps 3: the replaced list keeps neither
    assert [(s["name"], s["epochs"], s["max_steps"]) for s in stages] == [("decoder", 1, None), ("more", 3, 7)]
    res = run_samfx("show", str(child))
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("stage ")]
    assert lines[0].startswith("stage decoder: ") and lines[0].endswith(" trainable parameters, 1 epoch(s)")
    assert lines[1].endswith(" trainable parameters, 3 epoch(s), at most 7 steps")


def test_train_prints_each_stages_epochs_and_steps(tmp_path, capsys):
    from samfx.config.recipe import load_recipe
    from samfx.engine.testing import toy_plugins
    from samfx.engine.train.trainer import Trainer

    plugins = toy_plugins()
    recipe = load_recipe(ROOT / "tests" / "recipes" / "toy.yaml", [], plugins.registry)
    Trainer(recipe, tmp_path / "run", registry=plugins.registry, plugin_versions=plugins.versions()).fit()
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stage 1/")]
    assert " trainable parameters, 2 epoch(s), 4 steps, fp32 on cpu" in line, line
