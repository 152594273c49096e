"""`samfx describe KIND/NAME` and `samfx list-plugins --kind` (issue #20, item 5)."""
from __future__ import annotations

import json

from tests.conftest import run_samfx
from tests.test_plugins import BROKEN, fake_dist


def test_describe_lists_fields_types_defaults_and_help():
    res = run_samfx("describe", "prompt_generator/clicks", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["qualname"] == "prompts/clicks" and report["plugin"] == "prompts"
    assert report["fields"][0] == {"name": "positive", "type": "int", "default": 1,
                                   "help": "foreground clicks per query"}
    assert [f["name"] for f in report["fields"]] == ["positive", "negative", "seed_eval"]
    res = run_samfx("describe", "prompt_generator/prompts/boxes")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "prompt_generator prompts/boxes (plugin prompts)"
    assert "  jitter: float = 0.1  # training: each side moves by up to this fraction of the box size" in res.stdout


def test_describe_shows_declared_ranges():
    res = run_samfx("describe", "temporal_module/sam2_memory", "--json")
    assert res.returncode == 0, res.stderr
    fields = {f["name"]: f for f in json.loads(res.stdout)["fields"]}
    assert fields["num_maskmem"]["range"] == ">= 1 (SAM2: 7)" and "range" not in fields["use_obj_ptrs"]
    res = run_samfx("describe", "prompt_generator/apg")
    assert "  tokens: int = 50  [>= 1]" in res.stdout


def test_describe_refuses_a_bad_spec_in_one_line():
    res = run_samfx("describe", "clicks")
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: describe: 'clicks' is not KIND/NAME; kinds are: image_encoder, "
                                  "prompt_encoder, mask_decoder, adapter, prompt_generator, temporal_module, "
                                  "dataset, loss (e.g. `samfx describe prompt_generator/clicks`)")
    res = run_samfx("describe", "prompt_generator/click")
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: describe: unknown prompt_generator 'click'; nearest registered: ")


def test_list_plugins_kind_leaves_out_plugins_without_that_kind(tmp_path):
    env = fake_dist(tmp_path, "brokenplug", BROKEN)
    res = run_samfx("list-plugins", "--kind", "loss", "--json", env=env)
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {"losses", "brokenplug"}  # a failed plugin might provide one
    assert set(rows["losses"]["components"]) == {"loss"} and "dice_bce" in rows["losses"]["components"]["loss"]
