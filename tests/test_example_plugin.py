"""A third-party plugin installs with pip (offline) and works with no change to samfx."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_samfx

EXAMPLE = ROOT / "examples" / "samfx-example-plugin"


@pytest.fixture(scope="module")
def example_env(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    # from a copy: building in place would leave build/ and *.egg-info in examples/
    before = sorted(EXAMPLE.rglob("*"))
    source = shutil.copytree(EXAMPLE, tmp_path_factory.mktemp("src") / EXAMPLE.name)
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--no-build-isolation", "--target", str(target), str(source)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert sorted(EXAMPLE.rglob("*")) == before, "installing the example wrote into examples/"
    return {"PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}


def test_example_plugin_is_listed(example_env):
    res = run_samfx("list-plugins", "--json", env=example_env)
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["example"] == {"name": "example", "version": "0.3.0", "status": "ok",
                               "target": "samfx_example.plugin",
                               "components": {"adapter": ["channel_gate"],
                                              "prompt_generator": ["center_click", "learned_click"]}}


def test_example_plugin_is_usable_from_a_recipe(example_env, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  image_encoder: {name: samus, size: tiny}\n  prompt: {name: center_click}\n"
                      "train:\n  stages:\n    - {name: apg, trainable: [mask_decoder]}\n")
    res = run_samfx("show", str(recipe), "--json", env=example_env)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["recipe"]["model"]["prompt"] == {"name": "example/center_click", "label": 1}
    assert "prompt:center_click" in report["params"]["by_component"]
    assert report["stages"][0]["params"]["trainable"] == report["params"]["by_component"]["mask_decoder"]["total"]


def test_example_plugin_trains_its_adapter_and_aux_loss(example_env, tmp_path):
    """Two steps of the plugin's own recipe: the gates and the click move, the aux loss is logged."""
    import torch

    run = tmp_path / "run"
    res = run_samfx("train", str(EXAMPLE / "recipes" / "learned_click.yaml"), "train.stages.0.max_steps=2",
                    "--out", str(run), "--quiet", env=example_env)
    assert res.returncode == 0, res.stderr
    with open(run / "log.csv", newline="") as fh:
        aux = [r for r in csv.DictReader(fh) if r["key"] == "train/aux/click_centre"]
    assert [r["global_step"] for r in aux] == ["1", "2"] and all(float(r["value"]) > 0 for r in aux)
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["model"]
    gates = [k for k in state if k.startswith("adapters.channel_gate-blocks-") and k.endswith(".gate")]
    assert len(gates) == 4 and all(bool(state[k].abs().sum() > 0) for k in gates)
    assert bool(state["prompt_generators.learned_click.position.weight"].abs().sum() > 0)
