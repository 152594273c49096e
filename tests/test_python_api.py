"""samfx.api: stable names and signatures, docs/python_api.md's examples run, the CLI calls only the API."""
from __future__ import annotations

import contextlib
import inspect
import io
import re

import pytest

from samfx import api
from samfx.contracts.errors import SamfxError
from tests.conftest import ROOT

SIGNATURES = {
    "load_recipe": "(path: 'str | Path | None', overrides: 'Sequence[str]' = (), *, registry: 'Registry | None' = None)"
                   " -> 'Recipe'",
    "build_model": "(recipe: 'Recipe | str | Path', *, registry: 'Registry | None' = None, "
                   "load_checkpoint: 'bool' = True) -> 'SegmentationModel'",
    "train": "(recipe: 'Recipe | str | Path', run_dir: 'str | Path | None' = None, *, "
             "overrides: 'Sequence[str]' = (), registry: 'Registry | None' = None, "
             "datasets: 'Mapping[str, Dataset[Any] | None] | None' = None, "
             "callbacks: 'Sequence[Callable[[Trainer, str], None]]' = (), quiet: 'bool' = True) -> 'dict[str, Any]'",
    "resume": "(run_dir: 'str | Path', recipe: 'Recipe | str | Path | None' = None, *, "
              "overrides: 'Sequence[str]' = (), registry: 'Registry | None' = None, quiet: 'bool' = True) "
              "-> 'dict[str, Any]'",
    "evaluate": "(target: 'str | Path', *, split: 'str | None' = None, data: 'str | None' = None, "
                "prompt: 'str | None' = None, device: 'str' = 'auto', compat_row_hd: 'bool | None' = None, "
                "limit: 'int | None' = None, write: 'bool' = True, registry: 'Registry | None' = None) "
                "-> 'dict[str, Any]'",
    "predict": "(checkpoint: 'str | Path', inputs: 'Sequence[str | Path]', out_dir: 'str | Path', *, "
               "prompt: 'str | None' = None, device: 'str' = 'auto', registry: 'Registry | None' = None, "
               "engine: 'str | None' = None, first_mask: 'str | Path | None' = None, any_modality: 'bool' = False, "
               "skip_bad: 'bool' = False, precision: 'str | None' = None) -> 'dict[str, Any]'",
    "load_run": "(target: 'str | Path', *, prompt: 'str | None' = None, device: 'str' = 'auto', "
                "registry: 'Registry | None' = None, precision: 'str | None' = None) -> 'Run'",
    "predict_arrays": "(run: 'Run | str | Path', images: 'np.ndarray', *, sequence: 'bool' = False, "
                      "prompt: 'str | None' = None, device: 'str' = 'auto') -> 'np.ndarray'",
    "report": "(run_dir: 'str | Path', *, split: 'str | None' = None, out: 'str | Path | None' = None, "
              "device: 'str' = 'cpu', registry: 'Registry | None' = None, prompt: 'str | Sequence[str] | None' = None) "
              "-> 'Path'",
}


def test_names_and_signatures_are_stable():
    assert sorted(api.__all__) == sorted([*SIGNATURES, "Run"])
    for name, sig in SIGNATURES.items():
        assert str(inspect.signature(getattr(api, name))) == sig, name
    fields = list(inspect.signature(api.Run).parameters)
    assert fields == ["model", "recipe", "checkpoint", "classes", "class_names", "prompt", "precision"]


def test_documented_table_lists_every_function():
    doc = (ROOT / "docs" / "python_api.md").read_text()
    for name in SIGNATURES:
        assert f"| `{name}(" in doc, name


def test_cli_calls_only_the_api():
    """train / eval / predict go through samfx.api, never the engine's entry points."""
    text = (ROOT / "samfx" / "cli" / "run_cmds.py").read_text()
    for engine_call in ("Trainer", "samfx.engine.eval.evaluate import evaluate", "samfx.deploy.predict",
                        "samfx.config.recipe import load_recipe"):
        assert engine_call not in text
    for api_call in ("api.train(", "api.resume(", "api.evaluate(", "api.predict("):
        assert api_call in text


def test_resume_errors_name_the_folder(tmp_path):
    with pytest.raises(SamfxError) as err:
        api.resume(tmp_path / "nope")
    assert str(err.value) == f"resume: no run folder {tmp_path / 'nope'}; check the path"
    with pytest.raises(SamfxError) as err:
        api.resume(tmp_path)
    assert str(err.value) == f"resume: no recipe.yaml in {tmp_path}; is it a samfx run folder?"


def test_overrides_need_a_recipe_file():
    recipe = api.load_recipe(ROOT / "tests" / "recipes" / "tiny_sam.yaml")
    with pytest.raises(SamfxError) as err:
        api.train(recipe, overrides=["train.seed=1"])
    assert str(err.value) == "overrides apply to a recipe file; pass them to load_recipe(path, overrides)"


def test_segment_refuses_float_images():
    run = api.Run(model=None, recipe=None, checkpoint=ROOT, classes=[1], class_names=["LV"],  # type: ignore[arg-type]
                  prompt="none", precision="fp32")
    import numpy as np

    with pytest.raises(SamfxError) as err:
        run.segment(np.zeros((4, 5)))
    assert str(err.value) == ("segment: images must be uint8 (H,W) or (N,H,W), got float64 (4, 5); convert with "
                              "(x * 255).astype('uint8') for [0,1] floats")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_python_api_page_runs(tmp_path, monkeypatch):
    """Every python block of docs/python_api.md, in order and in one namespace, from a copy of the
    repository's layout (its tests/recipes) so that runs/ is written under tmp_path."""
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks((ROOT / "docs" / "python_api.md").read_text())
    assert len(blocks) >= 7
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/python_api.md block {i + 1}", "exec"), namespace)
    printed = out.getvalue()
    assert "error: train.stages.0.max_step: unknown key, did you mean 'max_steps'? (in command line)" in printed
    assert "True" in printed and "(80, 96) uint8" in printed and "(2, 80, 96) True" in printed
    assert "[('step', 1), ('epoch', 1)]" in printed
    assert (tmp_path / "runs" / "notebook-pred" / "echo_label.png").is_file()
    assert (tmp_path / "runs" / "notebook" / "eval-test.json").is_file()


def test_predict_arrays_refuses_a_second_prompt_for_a_loaded_run():
    import numpy as np

    run = api.Run(model=None, recipe=None, checkpoint=ROOT, classes=[1], class_names=["LV"],  # type: ignore[arg-type]
                  prompt="none", precision="fp32")
    with pytest.raises(SamfxError) as err:
        api.predict_arrays(run, np.zeros((4, 5), np.uint8), prompt="apg")
    assert str(err.value) == ("predict_arrays: prompt 'apg' differs from the loaded run's 'none'; pass it to "
                              "load_run(..., prompt=...)")
