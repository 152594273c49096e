"""Recipes: base inheritance, overrides, typed component schemas, one-line errors."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import RecipeError, RegistryError
from samfx.contracts.registry import Registry


@dataclass
class EncCfg:
    size: str = "vit_b"
    image_size: int = 256


@dataclass
class ApgCfg:
    tokens: int = 50
    form: str = "paper"
    widths: list[int] = field(default_factory=lambda: [64, 64])


def _reg() -> Registry:
    reg = Registry()
    f = "x:y"
    reg.add("image_encoder", "samus", f, plugin="samus", schema=EncCfg)
    reg.add("prompt_encoder", "sam", f, plugin="sam")
    reg.add("mask_decoder", "sam", f, plugin="sam")
    reg.add("prompt_generator", "clicks", f, plugin="prompts")
    reg.add("prompt_generator", "apg", f, plugin="apg", schema=ApgCfg)
    reg.add("adapter", "msff", f, plugin="msff")
    reg.add("loss", "dice_bce", f, plugin="losses")
    reg.add("dataset", "synthetic_echo", f, plugin="datasets")
    return reg


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_base_merge_and_list_replacement(tmp_path):
    write(tmp_path, "base.yaml", "model:\n  image_encoder: {name: samus, size: vit_l}\n"
                                 "data:\n  classes: [1, 2, 3]\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nmodel:\n  image_encoder: {image_size: 512}\n"
                                          "data:\n  classes: [1]\n")
    r = load_recipe(child, registry=_reg())
    # resolved names are qualified (plugin/name) so a stored recipe keeps meaning the same component
    assert r.config["model"]["image_encoder"] == {"name": "samus/samus", "size": "vit_l", "image_size": 512}
    assert r.config["data"]["classes"] == [1]                     # lists replaced, not merged
    assert r.config["train"]["stages"][0]["optimizer"]["lr"] == 5e-4  # defaults filled
    assert r.config["model"]["prompt"] == {"name": "prompts/clicks"}


@pytest.mark.parametrize("base_name,child_name", [("apg", "apg/apg"), ("apg/apg", "apg")])
def test_base_options_merge_when_child_names_same_component_differently(tmp_path, base_name, child_name):
    write(tmp_path, "base.yaml", f"model:\n  prompt: {{name: {base_name}, tokens: 3}}\n")
    child = write(tmp_path, "child.yaml", f"base: base.yaml\nmodel:\n  prompt: {{name: {child_name}, "
                                          "form: reference}\n")
    r = load_recipe(child, registry=_reg())
    assert r.config["model"]["prompt"] == {"name": "apg/apg", "tokens": 3, "form": "reference",
                                           "widths": [64, 64]}
    over = load_recipe(write(tmp_path, "r.yaml", "base: base.yaml\n"),
                       [f"model.prompt={{name: {child_name}, form: reference}}"], registry=_reg())
    assert over.config["model"]["prompt"]["tokens"] == 3


def test_renamed_component_still_drops_base_options(tmp_path):
    write(tmp_path, "base.yaml", "model:\n  prompt: {name: apg, tokens: 3}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nmodel:\n  prompt: {name: prompts/clicks}\n")
    assert load_recipe(child, registry=_reg()).config["model"]["prompt"] == {"name": "prompts/clicks"}


def test_component_field_ranges_name_key_value_range_and_file(tmp_path):
    from samfx.contracts.bounds import bounded

    @dataclass
    class Bounded:
        frames: int = bounded(4, ge=2, note="two neighbours")
        ratio: float | None = bounded(None, gt=0, le=1)

    reg = _reg()
    reg.add("temporal_module", "mem", "x:y", plugin="m", schema=Bounded)
    p = write(tmp_path, "r.yaml", "model:\n  temporal: {name: mem, frames: 1}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(p, registry=reg)
    assert str(err.value) == f"model.temporal.frames: must be >= 2 (two neighbours), got 1 (in {p})"
    with pytest.raises(RecipeError, match=r"model.temporal.ratio: must be > 0 and <= 1, got 1.5 \(in command line\)"):
        load_recipe(p, ["model.temporal.frames=2", "model.temporal.ratio=1.5"], registry=reg)
    assert load_recipe(p, ["model.temporal.frames=2"], registry=reg).config["model"]["temporal"]["ratio"] is None


def test_overrides_including_list_items(tmp_path):
    p = write(tmp_path, "r.yaml", "model:\n  prompt: {name: apg}\n")
    r = load_recipe(p, ["model.prompt.form=reference", "train.stages.0.epochs=3", "data.classes=[2,3]"],
                    registry=_reg())
    assert r.config["model"]["prompt"]["form"] == "reference"
    assert r.config["train"]["stages"][0]["epochs"] == 3
    assert r.config["data"]["classes"] == [2, 3]


def test_mistyped_component_key_names_path_file_and_suggestion(tmp_path):
    p = write(tmp_path, "r.yaml", "model:\n  prompt: {name: apg, tokns: 10}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(p, registry=_reg())
    assert str(err.value) == f"model.prompt.tokns: unknown key, did you mean 'tokens'? (in {p})"


def test_mistyped_core_key_from_command_line(tmp_path):
    p = write(tmp_path, "r.yaml", "train: {seed: 1}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(p, ["train.sed=2"], registry=_reg())
    assert str(err.value) == "train.sed: unknown key, did you mean 'seed'? (in command line)"


def test_wrong_type_is_one_line(tmp_path):
    p = write(tmp_path, "r.yaml", "model:\n  image_encoder: {name: samus, image_size: big}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(p, registry=_reg())
    msg = str(err.value)
    assert msg == f"model.image_encoder.image_size: expected integer, got 'big' (in {p})"
    assert "\n" not in msg


def test_nested_core_typo_in_stage(tmp_path):
    p = write(tmp_path, "r.yaml", "train:\n  stages:\n    - name: s1\n      optimizer: {name: adam, lrr: 0.1}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(p, registry=_reg())
    assert str(err.value) == f"train.stages.0.optimizer.lrr: unknown key, did you mean 'lr'? (in {p})"


def test_unknown_component_lists_nearest(tmp_path):
    p = write(tmp_path, "r.yaml", "model:\n  prompt: {name: apgg}\n")
    with pytest.raises(RegistryError) as err:
        load_recipe(p, registry=_reg())
    assert str(err.value).startswith(f"model.prompt.name ({p}): unknown prompt_generator 'apgg'; "
                                     f"nearest registered: apg")


def test_missing_file_bad_yaml_and_base_loop(tmp_path):
    with pytest.raises(RecipeError, match="recipe file '.*nope.yaml' not found"):
        load_recipe(tmp_path / "nope.yaml", registry=_reg())
    bad = write(tmp_path, "bad.yaml", "model: [unclosed\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        load_recipe(bad, registry=_reg())
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(RecipeError, match="'base:' inheritance loops"):
        load_recipe(tmp_path / "a.yaml", registry=_reg())


def test_bad_override_syntax():
    with pytest.raises(RecipeError, match="override 'train.seed' must look like key.path=value"):
        load_recipe(None, ["train.seed"], registry=_reg())


def test_recipe_cannot_name_import_paths(tmp_path):
    p = write(tmp_path, "r.yaml", "model:\n  prompt: {name: 'os:system'}\n")
    with pytest.raises(RegistryError, match="unknown prompt_generator 'os:system'"):
        load_recipe(p, registry=_reg())
