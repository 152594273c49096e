"""Reliability of the environment, stop signals and interrupted writes: an unusable cache, no HOME,
SIGHUP and a second Ctrl-C during a save, a failed build, and outputs replaced atomically."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samfx.contracts.errors import DataError, SamfxError
from samfx.data import cache
from samfx.data.files import atomic_write, write_json, write_text
from tests.conftest import ROOT
from tests.test_faults_rundir import TOY, _state, _toy_trainer


def test_a_cache_that_cannot_be_created_is_one_line_naming_it(tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    monkeypatch.setenv("SAMFX_CACHE", str(blocker / "cache"))
    target = cache.cache_dir() / "store.h5"
    with pytest.raises(DataError) as err:
        cache.cached(target, lambda p: pytest.fail("nothing is made"))
    line = str(err.value)
    assert "\n" not in line and str(blocker / "cache") in line and "SAMFX_CACHE" in line


def test_an_unset_home_still_names_a_cache_folder(monkeypatch):
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("SAMFX_CACHE", raising=False)
    assert cache.cache_dir().is_absolute()


def test_sighup_stops_at_the_step_with_last_pt_written(tmp_path):
    stopped = tmp_path / "stopped"
    r = subprocess.run([sys.executable, "-m", "samfx.engine.testing", str(stopped), *TOY, "--kill-at-step", "3",
                        "--kill-signal", "HUP"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert f"interrupted (SIGHUP) after step 3, saved in {stopped / 'last.pt'}" in r.stderr, r.stderr[-2000:]
    p = _state(stopped / "last.pt")["progress"]
    assert (p["global_step"], p["finished"]) == (3, False)


def test_a_second_ctrl_c_during_the_save_lets_the_save_complete(tmp_path, monkeypatch):
    from samfx.engine.run import checkpoints as ckpt
    from samfx.engine.train.interrupt import Interrupted

    real_save = ckpt.save

    def save(obj, path):  # the second Ctrl-C arrives while last.pt is being written
        os.kill(os.getpid(), signal.SIGINT)
        real_save(obj, path)

    def first(trainer, event):
        if event == "step" and trainer.progress.global_step == 3:
            monkeypatch.setattr(ckpt, "save", save)
            os.kill(os.getpid(), signal.SIGINT)

    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        _toy_trainer(run, callbacks=[first]).fit()
    p = _state(run / "last.pt")["progress"]
    assert (p["global_step"], p["finished"]) == (3, False)
    assert not list(run.glob(".last.pt.*"))


def test_a_failed_model_build_leaves_no_run_folder(tmp_path, monkeypatch):
    from samfx.engine.train import trainer

    def broken(*a, **k):
        raise SamfxError("model: cannot build")

    monkeypatch.setattr(trainer, "build_model", broken)
    with pytest.raises(SamfxError):
        _toy_trainer(tmp_path / "runs" / "new").fit()
    assert not (tmp_path / "runs" / "new").exists()
    with pytest.raises(SamfxError):
        _toy_trainer(None, f"train.out_dir={tmp_path / 'out'}").fit()
    assert list((tmp_path / "out").iterdir()) == []


def _half_then_fail(fh):
    fh.write(b'{"half": ')
    raise OSError(5, "Input/output error")


@pytest.mark.parametrize("name", ["eval-val.json", "report-val.html"])
def test_an_interrupted_json_or_report_write_keeps_the_old_file(tmp_path, name):
    path = tmp_path / name
    (write_json(path, {"old": 1}) if name.endswith(".json") else write_text(path, "<html>old</html>"))
    before = path.read_bytes()
    with pytest.raises(OSError):
        atomic_write(path, _half_then_fail)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [name]
    with pytest.raises(OSError):
        atomic_write(tmp_path / "new.json", _half_then_fail)
    assert not (tmp_path / "new.json").exists()


def test_an_interrupted_onnx_export_keeps_the_old_file(tmp_path):
    from samfx.deploy.export_onnx import _write_atomically

    out = tmp_path / "model.onnx"
    out.write_bytes(b"old graph")

    def half(tmp: Path):
        tmp.write_bytes(b"half a graph")
        raise RuntimeError("killed")

    with pytest.raises(SamfxError):
        _write_atomically(out, half)
    assert out.read_bytes() == b"old graph" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    _write_atomically(out, lambda tmp: tmp.write_bytes(b"new graph"))
    assert out.read_bytes() == b"new graph" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_an_export_to_a_path_under_a_file_is_one_line(tmp_path):
    from samfx.deploy.export_onnx import _write_atomically

    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "sub dir é" / "model.onnx"
    with pytest.raises(SamfxError) as err:
        _write_atomically(out, lambda tmp: pytest.fail("nothing is written"))
    assert str(err.value).startswith(f"--out {out}: cannot write there")


def test_atomic_writes_take_paths_with_spaces_unicode_and_newlines(tmp_path):
    for name in ["with space.json", "écho 超声.json", "new\nline.json"]:
        write_json(tmp_path / name, {"ok": True})
        assert (tmp_path / name).read_text().startswith("{")
    assert torch.tensor(1).item() == 1


# -- read-only run folders: one line naming the path -------------------------------------------------------

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from samfx.engine.testing import toy_plugins
    from tests.toy_runs import train_toy

    plugins = toy_plugins()
    run = train_toy(tmp_path_factory.mktemp("toy") / "run", plugins, "train.stages.0.max_steps=1",
                    "data.source.train=4", "data.batch_size=2")
    return run, plugins


def _denied(path):
    raise PermissionError(13, "Permission denied", str(path))


def test_eval_of_a_read_only_run_is_one_line_naming_the_file(toy, monkeypatch):
    from samfx.engine.eval import evaluate

    run, plugins = toy
    monkeypatch.setattr(evaluate, "write_json", lambda path, obj: _denied(path))
    with pytest.raises(SamfxError) as err:
        evaluate.evaluate(run, registry=plugins.registry, overlays=0, device="cpu", limit=2)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{run}/eval-") and "Permission denied" in line


def test_resume_of_a_read_only_run_is_one_line_and_changes_nothing(toy, monkeypatch):
    run, _ = toy
    real_open = os.open

    def open_(path, *a, **k):
        return _denied(path) if str(path).endswith(".lock") else real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(SamfxError) as err:
        _toy_trainer(run, resume=True).fit()
    assert str(err.value) == f"{run}: cannot lock the run folder (Permission denied); is it writable?"


def test_report_of_a_read_only_run_is_one_line(toy, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from samfx.report import write

    run, plugins = toy
    monkeypatch.setattr(write, "collect", lambda *a, **k: SimpleNamespace(run=run, report={"split": "test"},
                                                                          eval_path=None))
    monkeypatch.setattr(write, "render", lambda data: "<html></html>")
    (tmp_path / "file.txt").write_text("x")
    for out in (tmp_path / "file.txt" / "report.html", None):
        with monkeypatch.context() as m:
            if out is None:
                m.setattr(write, "write_text", lambda path, text: _denied(path))
            with pytest.raises(SamfxError) as err:
                write.write_report(run, registry=plugins.registry, out=out)
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"{out or run / 'report-test.html'}: cannot write the report")


def test_an_export_killed_while_stamping_keeps_the_old_graph(toy, tmp_path, monkeypatch):
    from samfx.deploy import export_onnx as ex

    run, plugins = toy
    out = tmp_path / "dir with space" / "modèle.onnx"
    ex.export_onnx(run, out, registry=plugins.registry)
    before = out.read_bytes()

    def killed(path, meta):
        path.write_bytes(path.read_bytes()[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(ex, "_stamp", killed)
    with pytest.raises(KeyboardInterrupt):
        ex.export_onnx(run, out, registry=plugins.registry)
    assert out.read_bytes() == before and [p.name for p in out.parent.iterdir()] == [out.name]
