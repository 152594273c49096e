"""Hostile inputs with bounded memory and no hang: lying safetensors headers, weights of the wrong dtype
or not finite, HDF5 stores declaring absurd shapes, YAML alias bombs and deep nesting, absurd sizes in a
recipe, plugins that block at import, stale run locks."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

from samfx.checkpoints.files import read_checkpoint
from samfx.config.recipe import load_recipe
from samfx.contracts.errors import CheckpointError, DataError, RecipeError
from samfx.data.store import StoreWriter, read_index
from samfx.engine.run.lock import NAME, RunLock
from tests.conftest import ROOT, run_samfx
from tests.test_plugins import fake_dist

TOY = ROOT / "tests" / "recipes" / "toy.yaml"


def _one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


# -- safetensors headers that lie ---------------------------------------------------------------------
def _safetensors(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


LIES = {
    "offsets past the end": _safetensors({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
                                         b"\0" * 8),
    "a 40 GB tensor in 16 bytes": _safetensors(
        {"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40_000_000_000]}}, b"\0" * 16),
    "shape larger than its bytes": _safetensors(
        {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 16]}}, b"\0" * 16),
    "overlapping tensors": _safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                         "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
    "header length past the end": struct.pack("<Q", 10**7) + b'{"a": 1}',
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_safetensors_header_that_lies_is_refused_in_one_line(tmp_path, lie):
    path = tmp_path / "w.safetensors"
    path.write_bytes(LIES[lie])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert _one_line(str(err.value)).startswith(f"{path}: cannot read safetensors file")


# -- right names, wrong values ------------------------------------------------------------------------
def _toy_model():
    from samfx.engine.testing import toy_plugins
    from samfx.model.build import build_model

    plugins = toy_plugins()
    recipe = load_recipe(str(TOY), [], plugins.registry)
    return build_model(recipe, plugins.registry, load_checkpoint=False)


def _bad_state(model, how: str) -> tuple[dict, str]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    if how == "nan":
        state[key].view(-1)[1] = float("nan")
    elif how == "inf":
        state[key].view(-1)[0] = float("inf")
    else:
        state[key] = torch.zeros(state[key].shape, dtype=torch.int64)
    return state, key


@pytest.mark.parametrize("how", ["nan", "inf", "int64"])
def test_weights_of_the_wrong_dtype_or_not_finite_are_refused_naming_file_and_key(tmp_path, how):
    from samfx.model.weights import load_weights

    model = _toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state, key = _bad_state(model, how)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_weights(model, path)
    msg = _one_line(str(err.value))
    assert msg.startswith(f"{path}: '{key}' ")
    assert ("NaN or infinite" in msg) if how != "int64" else ("int64" in msg and "float32" in msg)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was loaded


def test_a_run_checkpoint_with_nan_weights_is_refused_by_restore(tmp_path):
    from samfx.engine.run.checkpoints import restore_weights

    model = _toy_model()
    state, key = _bad_state(model, "nan")
    with pytest.raises(CheckpointError, match=rf"^{tmp_path}/last.pt: '{key}' holds NaN"):
        restore_weights(model, state, tmp_path / "last.pt", "hint")


def test_half_precision_weights_still_load(tmp_path):
    from samfx.model.weights import load_weights

    model = _toy_model()
    path = tmp_path / "w.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    load_weights(model, path)


# -- HDF5 stores that declare absurd shapes -----------------------------------------------------------
def _store(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, [1], ["lv"]) as w:
        w.add_image("a", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), patient="p")
        w.add_sequence("q", np.zeros((2, 4, 4), np.uint8), patient="p")
        w.set_split("train", patients=["p"])
    return path


def _replace(f, name: str, shape, chunks, dtype=np.uint8):
    attrs = dict(f[name].attrs)
    del f[name]
    ds = f.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, compression="gzip")
    ds.attrs.update(attrs)


ABSURD = {  # dataset, declared shape, chunks, what the message says
    "huge image": ("samples/a/image", (1_000_000, 1_000_000), (64, 64), "declares shape (1000000, 1000000)"),
    "huge chunk": ("sequences/q/frames", (1000, 1000, 1000), (1000, 1000, 1000), "declares chunks (1000, 1000, 1000)"),
    "a billion frames": ("sequences/q/frames", (10**9, 4, 4), (1, 4, 4), "declares shape (1000000000, 4, 4)"),
    "huge flag list": ("sequences/q/labeled", (10**9,), (1024,), "declares shape (1000000000,)"),
}


@pytest.mark.parametrize("case", list(ABSURD))
def test_a_store_declaring_absurd_shapes_is_refused_before_reading(tmp_path, case):
    path = _store(tmp_path)
    name, shape, chunks, says = ABSURD[case]
    with h5py.File(path, "a") as f:
        _replace(f, name, shape, chunks, bool if name.endswith("labeled") else np.uint8)
    assert path.stat().st_size < 10**6  # declared, never written
    with pytest.raises(DataError) as err:
        read_index(path)
    msg = _one_line(str(err.value))
    assert msg.startswith(f"{path}: /{name} {says}"), msg


def test_a_huge_split_list_is_refused(tmp_path):
    path = _store(tmp_path)
    with h5py.File(path, "a") as f:
        del f["splits/train/patients"]
        f["splits/train"].create_dataset("patients", shape=(10**9,), chunks=(1024,), dtype=h5py.string_dtype())
    with pytest.raises(DataError, match=r"/splits/train/patients is .* expected a list of at most"):
        read_index(path)


# -- YAML bombs, deep nesting, absurd sizes -----------------------------------------------------------
def _bomb() -> str:
    levels = "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 9))
    return "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + levels + "model: {image_encoder: {name: toy}}\ndata: *a8\n"


RECIPES = {
    "billion laughs": (_bomb(), ":5: recipe expands to more than 100000 values through its aliases"),
    "deep flow nesting": ("model: " + "{a: " * 20000 + "1" + "}" * 20000 + "\n", ":1: recipe nested deeper than 32"),
    "deep block nesting": ("model:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100)) + " " * 202 + "v: 1\n",
                           ":32: recipe nested deeper than 32"),
}


@pytest.mark.parametrize("case", list(RECIPES))
def test_yaml_bombs_and_deep_nesting_are_refused_in_one_line_at_once(tmp_path, case):
    text, says = RECIPES[case]
    path = tmp_path / "r.yaml"
    path.write_text(text)
    start = time.monotonic()
    with pytest.raises(RecipeError) as err:
        load_recipe(str(path))
    assert time.monotonic() - start < 5
    assert _one_line(str(err.value)).startswith(f"{path}{says}")


def test_aliases_of_ordinary_size_still_work(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(f"base: {TOY}\ndata: {{batch_size: &b 3}}\neval: {{batch_size: *b}}\n")
    assert load_recipe(str(path)).config["eval"]["batch_size"] == 3


def test_an_absurd_image_size_is_refused_before_the_model_is_built():
    res = run_samfx("show", str(ROOT / "tests" / "recipes" / "tiny_sam.yaml"),
                    "model.image_encoder.image_size=1000000", timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: model.image_encoder.image_size: must be >= 1 and <= 4096 (SAM uses 1024, "
                                  "SAMUS 256), got 1000000 (in command line)")


# -- plugins that block at import ---------------------------------------------------------------------
BLOCKS = "import time\ntime.sleep(10**6)\n"


def test_a_plugin_blocking_at_import_is_reported_failed_after_the_timeout(tmp_path):
    env = {**fake_dist(tmp_path, "stuckplug", BLOCKS), "SAMFX_PLUGIN_TIMEOUT": "2"}
    start = time.monotonic()
    res = run_samfx("list-plugins", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - start < 60
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["stuckplug"]["status"] == "failed"
    assert rows["stuckplug"]["error"] == (
        "PluginTimeout: import did not finish within 2 s (it blocks or hangs); skip it with "
        "SAMFX_DISABLE_PLUGINS=stuckplug or allow longer with SAMFX_PLUGIN_TIMEOUT")
    assert rows["sam"]["status"] == "ok"


def test_help_and_a_disabled_blocking_plugin_do_not_wait(tmp_path):
    env = fake_dist(tmp_path, "stuckplug", BLOCKS)
    assert run_samfx("--help", env=env, timeout=60).returncode == 0
    res = run_samfx("list-plugins", "--json", env={**env, "SAMFX_DISABLE_PLUGINS": "stuckplug"}, timeout=60)
    assert {r["name"]: r["status"] for r in json.loads(res.stdout)}["stuckplug"] == "disabled"


# -- stale run locks ----------------------------------------------------------------------------------
def test_a_lock_file_left_by_a_dead_process_is_stale(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / NAME).write_text(f"{dead.stdout.strip()} somehost\n")
    lock = RunLock.acquire(tmp_path)
    assert (tmp_path / NAME).read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (tmp_path / NAME).exists()
