"""Bad data inputs and outputs give one line (exit 2, no traceback) naming the file and what to do.

Issue #14 items 4 (stale partial files, overlay folders), 6 (store overwrite policy), 8 (recipe
classes the store lacks) and 10 (corrupt stores, images, NIfTI and checkpoint paths).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from samfx.data.synth.store import generate
from samfx.engine.testing import toy_plugins
from tests.conftest import run_samfx
from tests.toy_runs import train_toy

TOY = Path(__file__).resolve().parent / "recipes" / "toy.yaml"
SEQ = "patient0001_2CH"


@pytest.fixture(scope="module")
def plugins():
    return toy_plugins()


@pytest.fixture
def cli(plugins, monkeypatch):
    """`samfx ARGS...` in this process with the toy plugins (CliRunner result)."""
    from samfx.cli.main import app
    from samfx.contracts import plugins as pluginmanager

    monkeypatch.setattr(pluginmanager, "_CACHE", plugins)
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def toy_run(plugins, tmp_path_factory):
    return train_toy(tmp_path_factory.mktemp("toy") / "run", plugins,
                     "train.stages.0.max_steps=1", "train.stages.0.epochs=1")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """3 synthetic patients (train/val/test one each), 2 frames of 32x32: matches the toy model."""
    return generate(tmp_path_factory.mktemp("store") / "s.h5", patients=3, frames=2, size=(32, 32))


def one_line(result, *parts: str) -> str:
    """The single `error: ...` line of a failed CLI run (CliRunner or subprocess) holding `parts`."""
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    err = result.stderr
    assert code == 2, (code, result.stdout, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def copy(store: Path, tmp_path: Path, name: str = "bad.h5") -> Path:
    dst = tmp_path / name
    shutil.copy(store, dst)
    return dst


# -- item 6: writing stores ----------------------------------------------------------------------
def test_synth_refuses_to_overwrite_and_never_replaces_a_non_store(tmp_path):
    out = tmp_path / "s.h5"
    args = ["data", "synth", "--patients", "1", "--frames", "2", "--size", "32", "32", "--json"]
    assert run_samfx(*args, "--out", str(out)).returncode == 0
    before = out.read_bytes()
    one_line(run_samfx(*args, "--out", str(out)), f"{out}: already exists; pass --force to replace it")
    assert out.read_bytes() == before
    assert run_samfx(*args, "--out", str(out), "--force").returncode == 0
    best = tmp_path / "best.pt"
    torch.save({"w": torch.zeros(2)}, best)
    weights = best.read_bytes()
    one_line(run_samfx(*args, "--out", str(best), "--force"),
             f"{best}: exists and is not a samfx store; refusing to replace it even with --force")
    assert best.read_bytes() == weights and not list(tmp_path.glob("*.partial-*"))


def test_synth_out_folder_or_unwritable_place_is_one_line(cli, tmp_path):
    args = ["data", "synth", "--patients", "1", "--frames", "2", "--size", "32", "32", "--json", "--out"]
    one_line(cli(*args, tmp_path), f"{tmp_path}: is a folder; --out names the store file to write")
    (tmp_path / "file").write_text("x")
    one_line(cli(*args, tmp_path / "file" / "s.h5"), f"{tmp_path / 'file' / 's.h5'}: cannot create the folder",
             "choose a path in a writable folder")


def test_preview_out_folder_is_one_line(cli, store, tmp_path):
    one_line(cli("data", "preview", store, "--out", tmp_path), f"{tmp_path}: is a folder; --out names the PNG")


@pytest.mark.parametrize("importer", ["camus", "us30k", "echonet"])
def test_importers_share_the_overwrite_policy(cli, tmp_path, importer):
    out = tmp_path / "notes.h5"
    out.write_text("not a store")
    one_line(cli("data", importer, tmp_path / "nowhere", "--out", out), f"{out}: already exists; pass --force")
    one_line(cli("data", importer, tmp_path / "nowhere", "--out", out, "--force"),
             f"{out}: exists and is not a samfx store")
    assert out.read_text() == "not a store"


def test_predict_out_that_is_a_file(cli, toy_run, tmp_path):
    from PIL import Image

    Image.fromarray(np.full((20, 25), 90, np.uint8)).save(tmp_path / "img.png")
    (tmp_path / "taken").write_text("x")
    one_line(cli("predict", toy_run / "last.pt", tmp_path / "img.png", "--out", tmp_path / "taken"),
             f"--out {tmp_path / 'taken'}: is a file")


# -- item 4 (second half): stale partial files, overlay folders ----------------------------------
def test_stale_partial_files_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "s.h5"
    stale = tmp_path / f"s.h5.partial-{dead.pid}"
    live = tmp_path / f"s.h5.partial-{os.getppid()}"  # our parent: alive, and not this process
    other = tmp_path / f"t.h5.partial-{dead.pid}"  # another store's: left to that store's writer
    for p in (stale, live, other):
        p.write_bytes(b"half a store")
    generate(out, patients=1, frames=2, size=(32, 32))
    assert out.is_file() and not stale.exists() and live.exists() and other.exists()


def test_eval_clears_its_overlay_folder_first(plugins, toy_run):
    from samfx.engine.eval.evaluate import evaluate

    folder = toy_run / "overlays" / "eval-val"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "007-from-an-older-eval.png").write_bytes(b"old")
    (folder / "notes.txt").write_text("mine")
    evaluate(toy_run, split="val", registry=plugins.registry, overlays=1)
    assert [p.name.startswith("000-") for p in folder.glob("*.png")] == [True]
    assert (folder / "notes.txt").exists()


def test_stage_overlays_replace_older_ones(plugins, toy_run, tmp_path):
    from samfx.data.datasets import ImageDataset
    from samfx.engine.eval.validation import write_overlays
    from samfx.engine.run import checkpoints as ckpt
    from samfx.engine.run.loaders import store_path

    model, recipe, _ = ckpt.load_model(toy_run / "last.pt", plugins.registry)
    ds = ImageDataset(store_path(recipe.config["data"]["source"], plugins.registry), "val", model.image_size)
    folder = tmp_path / "overlays" / "all"
    folder.mkdir(parents=True)
    (folder / "005-stale.png").write_bytes(b"old")
    write_overlays(model, ds, [1, 2, 3], folder, torch.device("cpu"), "fp32", 2)
    assert sorted(p.name[:4] for p in folder.glob("*.png")) == ["000-", "001-"]


# -- item 8 (third part): recipe classes the store does not declare -------------------------------
def test_classes_missing_from_the_store_fail_before_training(cli, tmp_path):
    run = tmp_path / "run"
    msg = one_line(cli("train", TOY, "data.classes=[1,2,9]", "data.class_names=[LV,MYO,X]", "--out", run,
                       "--quiet"), "data.classes: [1, 2, 9] includes 9, which the store ",
                   "does not declare (its classes: 1=LV, 2=MYO, 3=LA)")
    assert ".h5" in msg
    assert not list(run.glob("*.pt"))


# -- item 10: damaged and malformed stores --------------------------------------------------------
def _flip(path: Path, spots: list[tuple[int, int]]) -> None:
    data = bytearray(path.read_bytes())
    for start, n in spots:
        data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    path.write_bytes(bytes(data))


def damaged(store: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A copy of `store` with flipped bytes in one group's header, or in every chunk of frames and
    labels, or cut in half; returns it and the dataset path the error must name."""
    bad = copy(store, tmp_path)
    if kind == "truncated":
        bad.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
        return bad, "not a readable HDF5 file"
    with h5py.File(bad, "r") as f:
        if kind == "header":
            spots = [(h5py.h5o.get_info(f[f"sequences/{SEQ}"].id).addr, 24)]
        else:
            spots = [(info.byte_offset, info.size) for q in f["sequences"].values() for name in ("frames", "labels")
                     for info in map(q[name].id.get_chunk_info, range(q[name].id.get_num_chunks()))]
    _flip(bad, spots)
    return bad, f"/sequences/{SEQ}" if kind == "header" else "/sequences/patient000"


@pytest.mark.parametrize("kind", ["header", "chunks", "truncated"])
def test_damaged_store_is_one_line_in_every_command(cli, toy_run, store, tmp_path, kind):
    bad, where = damaged(store, tmp_path, kind)
    commands = [("data", "stats", bad), ("data", "preview", bad, "--out", tmp_path / "p.png"),
                ("train", TOY, f"data.source={{name: h5, path: {bad}}}", "--out", tmp_path / "run", "--quiet"),
                ("eval", toy_run, "--data", bad, "--split", "val")]
    for args in commands:
        msg = one_line(cli(*args), str(bad), where)
        assert "re-create it" in msg or kind == "truncated"


def _rewrite(path: Path, dataset: str, data: np.ndarray) -> None:
    with h5py.File(path, "r+") as f:
        del f[dataset]
        f[dataset] = data


MALFORMED = {
    "frames of rank 2": (f"sequences/{SEQ}/frames", np.zeros((2, 32), np.uint8), "is uint8 (2, 32), expected"),
    "labels of another shape": (f"sequences/{SEQ}/labels", np.zeros((2, 32, 31), np.uint8),
                                "is uint8 (2, 32, 31), expected uint8 (2, 32, 32) like its frames"),
    "float frames": (f"sequences/{SEQ}/frames", np.zeros((2, 32, 32), np.float32), "is float32 (2, 32, 32)"),
    "flags of another length": (f"sequences/{SEQ}/labeled", np.ones(3, bool), "is bool (3,), expected bool (2,)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_datasets_are_rejected_when_the_store_is_opened(cli, store, tmp_path, case):
    dataset, data, what = MALFORMED[case]
    bad = copy(store, tmp_path)
    _rewrite(bad, dataset, data)
    one_line(cli("data", "stats", bad), f"{bad}: /{dataset} {what}", "re-create it")


def test_wrong_rank_frames_stop_training_before_the_first_step(cli, store, tmp_path):
    bad = copy(store, tmp_path)
    _rewrite(bad, f"sequences/{SEQ}/frames", np.zeros((2, 32), np.uint8))
    one_line(cli("train", TOY, f"data.source={{name: h5, path: {bad}}}", "--out", tmp_path / "run", "--quiet"),
             f"{bad}: /sequences/{SEQ}/frames is uint8 (2, 32)")
    assert not list((tmp_path / "run").glob("*.pt"))


def test_labels_outside_the_declared_classes_are_an_error_on_read(cli, store, tmp_path):
    bad = copy(store, tmp_path)
    with h5py.File(bad, "r+") as f:
        for q in f["sequences"].values():
            labels = q["labels"][()]
            labels[:, 0, 0] = 9
            q["labels"][...] = labels
    one_line(cli("data", "stats", bad), f"{bad}: /sequences/", "/labels holds label ids [9] that the store "
                                                             "does not declare (classes [1, 2, 3])")
    one_line(cli("train", TOY, f"data.source={{name: h5, path: {bad}}}", "--out", tmp_path / "run", "--quiet"),
             "/labels holds label ids [9]")


# -- item 10: predict inputs and checkpoint paths ---------------------------------------------------
def _nifti(path: Path, data: np.ndarray) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def _bad_input(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    if name == "empty.png":
        p.write_bytes(b"")
    elif name == "garbage.jpg":
        p.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    elif name == "text.png":
        p.write_text("not an image")
    elif name == "empty.nii":
        p.write_bytes(b"")
    elif name == "garbage.nii.gz":
        p.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    elif name == "truncated.nii.gz":
        _nifti(p, np.arange(60 * 70 * 5, dtype=np.float32).reshape(60, 70, 5))
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif name == "nan.nii":
        _nifti(p, np.full((60, 70), np.nan, np.float32))
    elif name == "no_frames.nii.gz":
        _nifti(p, np.zeros((60, 70, 0), np.uint8))
    return p


@pytest.mark.parametrize("name,what", [
    ("empty.png", "cannot read image"), ("garbage.jpg", "cannot read image"), ("text.png", "cannot read image"),
    ("empty.nii", "cannot read NIfTI"), ("garbage.nii.gz", "cannot read NIfTI"),
    ("truncated.nii.gz", "cannot read NIfTI"), ("nan.nii", "image is empty or has NaN/inf values"),
    ("no_frames.nii.gz", "NIfTI with shape (60, 70, 0) has no pixels"),
])
def test_predict_bad_inputs_are_one_line(cli, toy_run, tmp_path, name, what):
    p = _bad_input(tmp_path, name)
    one_line(cli("predict", toy_run / "last.pt", p, "--out", tmp_path / "out"), f"{p}: {what}")


@pytest.mark.parametrize("kind", ["store", "folder"])
def test_model_checkpoint_that_is_a_store_or_a_folder(cli, store, tmp_path, kind):
    path = store if kind == "store" else tmp_path
    what = "is an HDF5 file (a samfx data store?), not PyTorch weights" if kind == "store" else "is a folder"
    one_line(cli("train", TOY, f"model.checkpoint={path}", "--out", tmp_path / "run", "--quiet"),
             f"{path}: {what}", "model.checkpoint")
