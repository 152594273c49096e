"""A full disk: checkpoint, JSON and store writes stop with one line naming the path and the space needed,
leave the previous files intact and no partial file behind."""
from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from samfx.checkpoints.files import atomic_save, save_checkpoint
from samfx.data import files
from samfx.data.files import DiskFull, write_json
from samfx.data.store import StoreWriter, read_index
from tests.conftest import ROOT

TOY = ["data.source.train=16", "data.batch_size=2", "train.grad_accum=2", "train.save_every=0",
       "train.stages.0.optimizer.name=adamw"]
REAL_FSYNC = os.fsync


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".partial-" in p.name)


@pytest.mark.parametrize("name", ["w.pt", "w.safetensors"])
def test_a_checkpoint_that_does_not_fit_keeps_the_old_one(tmp_path, monkeypatch, name):
    path = tmp_path / name
    save_checkpoint({"model": {"w": torch.zeros(3)}}, path)
    before = _sha(path)
    monkeypatch.setattr(files.os, "fsync", _full)
    with pytest.raises(DiskFull) as err:
        save_checkpoint({"model": {"w": torch.ones(1000, 250)}}, path)  # 1 MB of float32
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: cannot write it, no space left on device (it needs at least 1.0 MB, ")
    assert msg.endswith(f"free); the previous {name} is kept: free some space or write to another folder")
    assert _sha(path) == before and _leftovers(tmp_path) == []


def test_a_write_failing_inside_torch_save_is_recognised(tmp_path, monkeypatch):
    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    real = files.os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: _Wrap(real(fd, mode), Full))
    with pytest.raises(DiskFull, match=r"needs at least 4.1 KB"):
        atomic_save({"w": torch.zeros(1024)}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


class _Wrap:
    """A file whose writes go to `full` (an out-of-space writer); everything else to the real file."""

    def __init__(self, fh, full):
        self.fh, self.full = fh, full(fh)

    def write(self, data):
        return self.full.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_a_json_report_that_does_not_fit_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    monkeypatch.setattr(files.os, "fsync", _full)
    with pytest.raises(DiskFull, match=rf"^{path}: cannot write it, no space left on device"):
        write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 1\n}\n' and _leftovers(tmp_path) == []


def test_training_that_cannot_save_stops_in_one_line_and_keeps_last_and_best(tmp_path, monkeypatch):
    """The first epoch's last.pt and best.pt are written; the second epoch's last.pt hits a full disk."""
    run = tmp_path / "run"
    kept: dict[str, str] = {}

    def fsync(fd):
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if name.startswith(".last.pt.") and (run / "last.pt").exists():
            kept.update({p: _sha(run / p) for p in ("last.pt", "best.pt")})
            _full()
        REAL_FSYNC(fd)

    from samfx.engine.testing import toy_plugins

    plugins = toy_plugins()
    monkeypatch.setattr(files.os, "fsync", fsync)
    from samfx.config.recipe import load_recipe
    from samfx.engine.train.trainer import Trainer

    recipe = load_recipe(str(ROOT / "tests" / "recipes" / "toy.yaml"), TOY, plugins.registry)
    trainer = Trainer(recipe, run, registry=plugins.registry, plugin_versions=plugins.versions(), quiet=True)
    with pytest.raises(DiskFull) as err:
        trainer.fit()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{run / 'last.pt'}: cannot write it, no space left on device")
    assert "needs at least" in msg and "the previous last.pt is kept" in msg
    assert kept and {p: _sha(run / p) for p in kept} == kept
    assert _leftovers(run) == []
    assert not (run / ".lock").exists()


def test_a_store_that_does_not_fit_leaves_no_file_and_one_line(tmp_path, monkeypatch):
    import h5py

    path = tmp_path / "s.h5"
    real = h5py.Group.create_dataset
    calls = []

    def create_dataset(self, *args, **kwargs):
        calls.append(args)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, error message = "
                                        "'No space left on device')")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    with pytest.raises(DiskFull) as err, StoreWriter(path, [1], ["lv"]) as w:
        for i in range(3):
            w.add_image(f"i{i}", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), patient="p")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: cannot write it, no space left on device (it needs at least ")
    assert msg.endswith("nothing was left at that path: free some space or write to another folder")
    assert list(tmp_path.iterdir()) == []


def test_a_store_whose_close_fails_for_space_leaves_the_old_store(tmp_path, monkeypatch):
    path = tmp_path / "s.h5"
    with StoreWriter(path, [1], ["lv"]) as w:
        w.add_image("a", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), patient="p")
    before = _sha(path)
    writer = StoreWriter(path, [1], ["lv"], force=True)
    with pytest.raises(DiskFull, match="the previous s.h5 is kept"), writer as w:
        w.add_image("b", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), patient="p")
        monkeypatch.setattr(w, "_write_splits", _full)
    assert _sha(path) == before and _leftovers(tmp_path) == []
    assert list(read_index(path).items) == ["a"]

