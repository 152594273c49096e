"""Adapters selected by component name, and `samfx show --sites` (issue #20, item 6)."""
from __future__ import annotations

import json

import pytest

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import RecipeError
from samfx.model.build import build_model
from samfx.model.trainable import select
from tests.conftest import ROOT, run_samfx

TINY = ROOT / "tests" / "recipes" / "tiny_sam.yaml"
LORA = 'model.adapters=[{name: lora, site: "blocks.*.attn.qkv"}, {name: msa_adapter, site: "blocks.0.mlp"}]'


def _model():
    return build_model(load_recipe(TINY, [LORA]), load_checkpoint=False)


def test_adapter_component_name_selects_all_its_sites():
    model = _model()
    assert "lora-blocks-0-attn-qkv" in model.adapters and "msa_adapter-blocks-0-mlp" in model.adapters
    by_name = select(model, ["adapter:lora"])
    assert by_name == {n for n, _ in model.named_parameters() if n.startswith("adapters.lora-blocks-")}
    assert by_name and not any("msa_adapter" in n for n in by_name)
    assert select(model, ["adapter:lora/lora"]) == by_name
    one = select(model, ["adapter:msa_adapter-blocks-0-mlp"])
    assert one and one == select(model, ["adapter:msa_adapter"])


def test_unknown_adapter_name_is_still_refused():
    with pytest.raises(RecipeError) as err:
        select(_model(), ["adapter:lor"], "train.stages.0.trainable")
    assert str(err.value).startswith("train.stages.0.trainable: 'adapter:lor' names no component or parameter; "
                                     "components: adapter:lora-blocks-0-attn-qkv, ")


def test_show_sites_lists_names_layouts_and_attached_adapters():
    res = run_samfx("show", str(TINY), LORA, "--sites")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "site                layout  in    out   spatial   adapters"
    assert lines[1] == "blocks.0.attn.qkv   linear  96    288   8x8       lora"
    assert lines[3] == "blocks.0.mlp        bhwc    96    96    4x4       msa_adapter"
    assert lines[4] == "blocks.0            bhwc    96    96    4x4       -"
    res = run_samfx("show", str(TINY), "--sites", "--json")
    rows = json.loads(res.stdout)
    assert rows[0] == {"name": "blocks.0.attn.qkv", "layout": "linear", "in_dim": 96, "out_dim": 288,
                       "spatial": [8, 8], "adapters": []}
