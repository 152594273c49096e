"""Bad recipes and plugin names: one line naming the file or key and the fix (issue #14, items 3, 7-9, 11, 12)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import RecipeError, RegistryError
from samfx.contracts.registry import Registry
from tests.conftest import ROOT, run_samfx

TOY = ROOT / "tests" / "recipes" / "toy.yaml"
TINY = ROOT / "tests" / "recipes" / "tiny_sam.yaml"


@dataclass
class EncCfg:
    size: str = "vit_b"
    image_size: int = 256


def _reg() -> Registry:
    reg = Registry()
    for kind, name, plugin in [("image_encoder", "samus", "samus"), ("prompt_encoder", "sam", "sam"),
                               ("mask_decoder", "sam", "sam"), ("prompt_generator", "clicks", "prompts"),
                               ("loss", "dice_bce", "losses"), ("dataset", "synthetic_echo", "datasets")]:
        reg.add(kind, name, "x:y", plugin=plugin, schema=EncCfg if kind == "image_encoder" else None)
    return reg


def _write(tmp_path, name: str, content: str | bytes):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def _error(tmp_path, content, overrides=(), name="r.yaml") -> str:
    p = _write(tmp_path, name, content)
    with pytest.raises(RecipeError) as err:
        load_recipe(p, list(overrides), registry=_reg())
    assert "\n" not in str(err.value)
    return str(err.value)


def _cli_error(*args, env=None) -> str:
    res = run_samfx(*args, env=env)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


# -- item 7: unreadable, empty, duplicated, not a recipe -------------------------------------------
def test_binary_recipe_through_the_cli(tmp_path):
    p = _write(tmp_path, "bin.yaml", b"\xff\xfe\x00\x01model")
    assert _cli_error("show", str(p)) == (f"error: {p}: not a UTF-8 text file (byte 0xff at offset 0); "
                                          f"a recipe is YAML text: save it as UTF-8")


def test_binary_recipe_that_decodes_as_utf8(tmp_path):
    assert _error(tmp_path, b"model:\x00\x01\x02").endswith("r.yaml: not a text file (character 0x00 at offset 6); "
                                                            "a recipe is YAML text")


def test_latin1_recipe_names_the_byte(tmp_path):
    msg = _error(tmp_path, "description: caf\xe9\n".encode("latin-1"))
    assert msg.endswith("r.yaml: not a UTF-8 text file (byte 0xe9 at offset 16); a recipe is YAML text: "
                        "save it as UTF-8")


@pytest.mark.parametrize("content", ["", "# only a comment\n", "{}\n"])
def test_empty_recipe_is_refused(tmp_path, content):
    msg = _error(tmp_path, content)
    assert msg.endswith("r.yaml: empty recipe (no model, data, train or eval section); start from a recipe in "
                        "recipes/ or name one with `base:`")


def test_duplicate_keys_name_file_and_lines(tmp_path):
    msg = _error(tmp_path, "train:\n  seed: 1\n  seed: 2\n")
    assert msg.endswith("r.yaml:3: key 'seed' given twice (first at line 2); keep one of them")
    msg = _error(tmp_path, "train:\n  stages:\n    - {name: a, epochs: 1, epochs: 2}\n")
    assert msg.endswith("r.yaml:3: key 'epochs' given twice (first at line 3); keep one of them")
    # a YAML merge (<<) may override on purpose
    p = _write(tmp_path, "m.yaml", "x: &d {seed: 1}\ntrain:\n  <<: *d\n  seed: 2\n")
    with pytest.raises(RecipeError, match="x: unknown key"):
        load_recipe(p, registry=_reg())


def test_base_naming_a_non_recipe_file_does_not_echo_it(tmp_path):
    secret = _write(tmp_path, "shadow", "root:$6$s3cr3t:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    child = _write(tmp_path, "child.yaml", f"base: {secret}\n")
    msg = _error(tmp_path, f"base: {secret}\n", name="child.yaml")
    assert msg == (f"{secret}: not a samfx recipe (no top-level model, data, train, eval section); "
                   f"'base:' in {child} should name a recipe YAML file")
    assert "s3cr3t" not in msg and "99999" not in msg
    # a typo'd section is still a recipe: the usual "did you mean"
    assert "modle: unknown key, did you mean 'model'?" in _error(tmp_path, "modle: {}\n")


# -- item 8: key paths and sources ----------------------------------------------------------------
def test_stage_keys_keep_their_path(tmp_path):
    msg = _error(tmp_path, "train:\n  stages:\n    - {name: s, epochs: abc}\n")
    assert msg.startswith("train.stages.0.epochs: expected integer, got 'abc' (in ")
    msg = _error(tmp_path, "train:\n  stages:\n    - {name: s}\n    - {name: t, optimizer: {lr: fast}}\n")
    assert msg.startswith("train.stages.1.optimizer.lr: expected float, got 'fast' (in ")


def test_override_replacing_a_value_is_blamed_on_the_command_line(tmp_path):
    text = "model:\n  image_encoder: {name: samus, image_size: 256}\ntrain:\n  stages:\n    - {name: s, epochs: 2}\n"
    msg = _error(tmp_path, text, ["model.image_encoder={name: samus, image_size: big}"])
    assert msg == "model.image_encoder.image_size: expected integer, got 'big' (in command line)"
    p = tmp_path / "r.yaml"
    assert _cli_error("show", str(p), "train.stages=[{name: s, epochs: abc}]") == \
        "error: train.stages.0.epochs: expected integer, got 'abc' (in command line)"


def test_list_given_a_scalar_says_so(tmp_path):
    p = _write(tmp_path, "r.yaml", "train: {seed: 1}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(p, ["data.classes=abc"], registry=_reg())
    assert str(err.value) == "data.classes: expected a list such as [1, 2], got 'abc' (in command line)"
    with pytest.raises(RecipeError, match=r"^data\.classes\.1: expected integer, got 'x' \(in command line\)$"):
        load_recipe(p, ["data.classes=[1, x]"], registry=_reg())


# -- item 9: ranges at load time ------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size: must be >= 1, got 0"),
    ("data.batch_size=-2", "data.batch_size: must be >= 1, got -2"),
    ("data.num_workers=-1", "data.num_workers: must be >= 0 (0 loads batches in the main process), got -1"),
    ("train.stages.0.optimizer.lr=-0.1", "train.stages.0.optimizer.lr: must be > 0, got -0.1"),
    ("train.stages.0.epochs=-1", "train.stages.0.epochs: must be >= 0 (0 with max_steps: the stage runs "
                                 "max_steps steps), got -1"),
    ("train.stages.0.epochs=0", "train.stages.0.epochs: 0 trains no step; use epochs >= 1, or set max_steps"),
    ("train.stages.0.max_steps=0", "train.stages.0.max_steps: must be >= 1 (null: no limit), got 0"),
    ("train.stages.0.max_steps=-2", "train.stages.0.max_steps: must be >= 1 (null: no limit), got -2"),
    ("train.stages=[]", "train.stages: no stages; a recipe trains at least one"),
    ("train.grad_accum=0", "train.grad_accum: must be >= 1, got 0"),
    ("train.stages.0.optimizer.betas=[0.9, 1.5]", "train.stages.0.optimizer.betas.1: must be >= 0 and < 1, got 1.5"),
    ("train.stages.0.select_metric=val/acc", "train.stages.0.select_metric: unknown 'val/acc'; use val/dice, "
                                             "val/loss, train/loss"),
    ("data.clip_labels=edes", "data.clip_labels: unknown 'edes'; use all or ed_es"),
])
def test_ranges_are_checked_at_load_time(tmp_path, override, message):
    p = _write(tmp_path, "r.yaml", "train: {seed: 1}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(p, [override], registry=_reg())
    assert str(err.value).startswith(message) and str(err.value).endswith("(in command line)")


def test_range_error_names_the_file_and_edge_values_that_mean_something(tmp_path):
    msg = _error(tmp_path, "data:\n  batch_size: -2\n")
    assert msg == f"data.batch_size: must be >= 1, got -2 (in {tmp_path / 'r.yaml'})"
    p = _write(tmp_path, "ok.yaml", "train:\n  stages:\n    - {name: s, epochs: 0, max_steps: 5}\n")
    assert load_recipe(p, registry=_reg()).config["train"]["stages"][0]["max_steps"] == 5


def test_negative_batch_size_stops_train_before_any_work(tmp_path):
    out = tmp_path / "run"
    msg = _cli_error("train", str(TINY), "data.batch_size=-2", "--out", str(out))
    assert msg == "error: data.batch_size: must be >= 1, got -2 (in command line)"
    assert not out.exists()


# -- item 11: disabled plugins --------------------------------------------------------------------
def test_component_of_a_disabled_plugin_says_so(tmp_path):
    p = _write(tmp_path, "r.yaml", "model:\n  adapters:\n    - {name: msff, site: cnn.out}\n")
    msg = _cli_error("show", str(p), env={"SAMFX_DISABLE_PLUGINS": "msff"})
    assert msg == (f"error: model.adapters.0.name ({p}): adapter 'msff' is not available: plugin 'msff' is "
                   f"disabled by SAMFX_DISABLE_PLUGINS=msff (remove it from there to use it)")


def test_unknown_name_in_disable_list_warns(monkeypatch, capsys):
    from samfx.contracts.plugins import load_plugins

    monkeypatch.setenv("SAMFX_DISABLE_PLUGINS", "msf, lora")
    plugins = load_plugins(strict=False)
    err = capsys.readouterr().err
    assert "warning: SAMFX_DISABLE_PLUGINS names 'msf', which is not an installed plugin, did you mean 'msff'?" in err
    assert "'lora'" not in err and plugins.info("lora").status == "disabled"
    with pytest.raises(RegistryError, match=r"unknown adapter 'lorra'; .*; plugin 'lora', which is disabled by "
                                            r"SAMFX_DISABLE_PLUGINS=msf, lora \(remove it from there"):
        plugins.registry.get("adapter", "lorra")


def test_component_of_a_failed_plugin_says_so():
    from samfx import hookimpl
    from samfx.contracts.plugins import load_plugins

    class Bad:
        @hookimpl
        def samfx_register(self, registry):
            raise ValueError("schema missing")

    reg = load_plugins(extra={"bad": Bad()}, strict=False).registry
    with pytest.raises(RegistryError) as err:
        reg.get("loss", "bad/dice", where="x.loss.name")
    assert str(err.value) == ("x.loss.name: loss 'bad/dice' is not available: plugin 'bad' failed to load: "
                              "ValueError: schema missing (run `samfx doctor` for the traceback)")


# -- item 12: interpolation -----------------------------------------------------------------------
def test_interpolation_is_refused(tmp_path):
    p = _write(tmp_path, "r.yaml", "data:\n  source: {name: synthetic_echo}\ndescription: 'data in ${oc.env:HOME}'\n")
    assert _cli_error("show", str(p)) == (
        f"error: description: 'data in ${{oc.env:HOME}}': ${{...}} interpolation is not supported in recipes; "
        f"write the value, or pass it on the command line (description=...) (in {p})")
    msg = _error(tmp_path, "model:\n  image_encoder: {name: samus, image_size: '${oc.env:SIZE}'}\n")
    assert msg.startswith("model.image_encoder.image_size: '${oc.env:SIZE}': ${...} interpolation is not supported")
    msg = _error(tmp_path, "train: {seed: 1}\n", ["train.stages=[{name: s, epochs: '${train.seed}'}]"])
    assert msg.startswith("train.stages.0.epochs: '${train.seed}': ${...} interpolation") and "(in command line)" in msg


# -- item 3: qualified names keep a run's meaning -------------------------------------------------
class Clash:
    """A newly installed plugin that also registers the toy plugin's names."""

    from samfx import hookimpl

    @hookimpl
    def samfx_register(self, registry):
        registry.add("prompt_generator", "toy_class", "samfx.engine.testing:_encoder")
        registry.add("image_encoder", "toy", "samfx.engine.testing:_encoder")


def _short_names(obj):
    """A recipe as runs stored it before names were qualified."""
    if isinstance(obj, dict):
        return {k: v.split("/")[-1] if k == "name" and isinstance(v, str) else _short_names(v)
                for k, v in obj.items()}
    return [_short_names(v) for v in obj] if isinstance(obj, list) else obj


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    from samfx.engine.testing import toy_plugins
    from samfx.engine.train.trainer import Trainer

    plugins = toy_plugins()
    root = tmp_path_factory.mktemp("names")
    runs = {}
    for name in ("new", "legacy"):
        recipe = load_recipe(TOY, ["train.stages.0.max_steps=1"], plugins.registry)
        Trainer(recipe, root / name, registry=plugins.registry, quiet=True).fit()
        runs[name] = root / name
    legacy = runs["legacy"]
    import yaml

    stored = yaml.safe_load((legacy / "recipe.yaml").read_text())
    (legacy / "recipe.yaml").write_text(yaml.safe_dump(_short_names(stored), sort_keys=False))
    for ck in ("last.pt", "best.pt"):
        obj = torch.load(legacy / ck, map_location="cpu", weights_only=True)
        obj["recipe"] = _short_names(obj["recipe"])
        torch.save(obj, legacy / ck)
    return plugins, runs


def _cli(plugins, monkeypatch, *args):
    from samfx.cli.main import app
    from samfx.contracts import plugins as pluginmanager

    monkeypatch.setattr(pluginmanager, "_CACHE", plugins)
    return CliRunner().invoke(app, list(args))


def test_runs_store_qualified_names_and_survive_a_clashing_plugin(toy_runs, monkeypatch, tmp_path):
    from PIL import Image

    from samfx.contracts.plugins import load_plugins
    from samfx.engine.testing import ToyPlugin

    plugins, runs = toy_runs
    run = runs["new"]
    stored = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["recipe"]
    assert stored["model"]["prompt"]["name"] == "toy/toy_class"
    assert "name: toy/toy\n" in (run / "recipe.yaml").read_text()
    clash = load_plugins(extra={"toy": ToyPlugin(), "clash": Clash()})
    r = _cli(clash, monkeypatch, "eval", str(run), "--split", "val", "--json")
    assert r.exit_code == 0, r.output
    r = _cli(clash, monkeypatch, "eval", str(run), "--split", "val", "--prompt", "toy/toy_class", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["prompt"] == "toy_class"
    Image.new("L", (20, 25), 90).save(tmp_path / "img.png")
    r = _cli(clash, monkeypatch, "predict", str(run), str(tmp_path / "img.png"), "--out", str(tmp_path / "p"),
             "--prompt", "toy/toy_class")
    assert r.exit_code == 0, r.output
    r = _cli(clash, monkeypatch, "train", "--resume", str(run), "train.stages.0.max_steps=2", "--quiet")
    assert r.exit_code == 0, r.output  # the recipe check passed (a finished run has nothing left to do)


def test_runs_saved_with_short_names_still_resume_and_evaluate(toy_runs, monkeypatch):
    from samfx.contracts.plugins import load_plugins
    from samfx.engine.run.rundir import resume_conflicts
    from samfx.engine.testing import ToyPlugin

    plugins, runs = toy_runs
    run = runs["legacy"]
    # with a clash, a short stored name cannot be resolved: the error says what can be done about it
    clash = load_plugins(extra={"toy": ToyPlugin(), "clash": Clash()})
    r = _cli(clash, monkeypatch, "eval", str(run), "--split", "val")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.strip() == ("error: model.image_encoder: image_encoder 'toy' is registered by several plugins "
                                "(clash, toy); use 'clash/toy' or 'toy/toy', or disable one plugin with "
                                "SAMFX_DISABLE_PLUGINS")
    r = _cli(plugins, monkeypatch, "train", "--resume", str(run), "train.stages.0.max_steps=2", "--quiet")
    assert r.exit_code == 0, r.output
    r = _cli(plugins, monkeypatch, "eval", str(run), "--split", "val", "--prompt", "toy/toy_class", "--json")
    assert r.exit_code == 0, r.output
    assert resume_conflicts({"model": {"prompt": {"name": "apg"}}}, {"model": {"prompt": {"name": "apg/apg"}}}) == []
    assert resume_conflicts({"model": {"prompt": {"name": "clicks"}}},
                            {"model": {"prompt": {"name": "prompts/none"}}}) == ["model.prompt.name"]
