"""Evaluation, prediction and the train/eval/predict CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from typer.testing import CliRunner

from samfx.contracts.errors import SamfxError
from samfx.engine.testing import toy_plugins
from tests.toy_runs import train_toy

TESTS = Path(__file__).resolve().parent
TOY = TESTS / "recipes" / "toy.yaml"


@pytest.fixture(scope="module")
def plugins():
    return toy_plugins()


@pytest.fixture(scope="module")
def toy_run(plugins, tmp_path_factory):
    return train_toy(tmp_path_factory.mktemp("toy") / "run", plugins, "train.stages.0.max_steps=2")


def _brute(p, g, sp, q=100.0):
    def pts(m):
        pad = np.pad(m, 1)
        inner = pad[1:-1, 1:-1] & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:])
        return np.argwhere(inner) * np.asarray(sp)
    d = cdist(pts(p), pts(g))
    return max(np.percentile(d.min(1), q), np.percentile(d.min(0), q))


def test_eval_report_matches_independent_metrics(plugins, toy_run, monkeypatch):
    from samfx.engine.eval import evaluate as E
    from samfx.engine.eval.inference import ClassPrediction

    def fake_predict(model, images, classes, label, prompt=None, precision="fp32"):
        pred = torch.roll(label, shifts=1, dims=-1)  # one column to the right
        pred[pred == 3] = 0                          # LA never predicted -> Dice 0, HD inf
        return ClassPrediction(pred, None, None, None)

    monkeypatch.setattr(E, "predict_classes", fake_predict)
    report = E.evaluate(toy_run, split="val", registry=plugins.registry, overlays=1)
    assert report["schema"] == "samfx.eval/1" and report["distance_unit"] == "mm"
    assert report["n_images"] == 4 and report["n_patients"] == 2 and report["prompt"] == "toy_class"
    written = json.loads(Path(report["written"]).read_text())
    assert written["images"] == report["images"]
    assert Path(report["written"]).name == "eval-val.json"
    assert len(list((toy_run / "overlays" / "eval-val").glob("*.png"))) == 1

    from samfx.data.datasets import ImageDataset
    ds = ImageDataset(report["store"], "val", 32)
    for rec in report["images"]:
        item = ds[rec["index"]]
        gt = item["label"].numpy()
        sp = item["spacing"].numpy().astype(float)
        assert rec["spacing"] == pytest.approx([0.3 * 40 / 32, 0.2 * 48 / 32])
        pred = np.roll(gt, 1, axis=-1)
        pred[pred == 3] = 0
        for c, name in ((1, "LV"), (2, "MYO")):
            p, g = pred == c, gt == c
            m = rec["classes"][name]
            assert m["dice"] == pytest.approx(2 * (p & g).sum() / (p.sum() + g.sum()), abs=1e-12)
            assert m["iou"] == pytest.approx((p & g).sum() / (p | g).sum(), abs=1e-12)
            assert m["hd"] == pytest.approx(_brute(p, g, sp), abs=1e-6)
            assert m["hd95"] == pytest.approx(_brute(p, g, sp, 95.0), abs=1e-6)
        la = rec["classes"]["LA"]
        assert la["dice"] == 0.0 and la["hd"] is None and la["hd95"] is None  # inf -> JSON null
    la = report["per_image"]["LA"]["hd"]
    assert la == {"mean": None, "std": None, "n": 0, "n_inf": 4}
    lv = [r["classes"]["LV"]["dice"] for r in report["images"]]
    assert report["per_image"]["LV"]["dice"]["mean"] == pytest.approx(np.mean(lv))
    assert report["per_image"]["LV"]["dice"]["std"] == pytest.approx(np.std(lv))
    by_patient = {}
    for r in report["images"]:
        by_patient.setdefault(r["patient"], []).append(r["classes"]["LV"]["dice"])
    patient_means = [np.mean(v) for v in by_patient.values()]
    assert report["per_patient"]["LV"]["dice"]["mean"] == pytest.approx(np.mean(patient_means))
    assert report["mean"]["dice"] == pytest.approx(np.mean([report["per_image"][n]["dice"]["mean"]
                                                            for n in ("LV", "MYO", "LA")]))


def test_predict_images_nifti_sequences_and_store(plugins, toy_run, tmp_path):
    import nibabel as nib
    from PIL import Image

    from samfx.deploy.predict import predict

    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((30, 45)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    seq = (rng.random((45, 30, 5)) * 255).astype(np.uint8)  # (x, y, t)
    nib.save(nib.Nifti1Image(seq, np.diag([0.4, 0.3, 1.0, 1.0])), str(tmp_path / "s.nii.gz"))
    from samfx.engine.run.loaders import cache_dir
    from samfx.engine.testing import ToyDataConfig, ToyDataSource

    store = ToyDataSource(ToyDataConfig()).path(cache_dir())
    inputs = [str(tmp_path / "a.png"), str(tmp_path / "s.nii.gz"), str(store)]
    out = tmp_path / "out"
    report = predict(toy_run, inputs, out, registry=plugins.registry)
    names = [r["name"] for r in report["results"]]
    assert names[:2] == ["a", "s"]
    label = np.asarray(Image.open(out / "a_label.png"))
    assert label.shape == (30, 45) and set(np.unique(label)) <= {0, 1, 2, 3}
    assert (out / "a_overlay.png").exists()
    s = report["results"][1]
    assert s["frames"] == 5 and s["spacing"] == pytest.approx([0.3, 0.4]) and s["area_unit"] == "mm2"
    frames = [np.asarray(Image.open(out / "s" / f"frame_{t:03d}_label.png")) for t in range(5)]
    assert all(f.shape == (30, 45) for f in frames)
    rows = list(csv.DictReader(open(out / "s_lv_area.csv", newline="")))
    assert [int(r["lv_area_px"]) for r in rows] == [int((f == 1).sum()) for f in frames]
    assert [float(r["lv_area_mm2"]) for r in rows] == pytest.approx([(f == 1).sum() * 0.12 for f in frames])
    assert (out / "s_lv_area.png").exists()
    assert json.loads((out / "predictions.json").read_text())["results"] == report["results"]
    from_store = report["results"][2:]
    assert len(from_store) == 17 and sum(r["frames"] for r in from_store) == 16 + 6  # 16 images, 1 sequence
    assert (out / f"{store.stem}-val0_overlay.png").exists() and (out / f"{store.stem}-seq0_lv_area.csv").exists()


def test_predict_refuses_simulated_prompts_and_bad_inputs(plugins, toy_run, tmp_path):
    from PIL import Image

    from samfx.deploy.predict import predict

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(SamfxError, match=r"prompt 'clicks' simulates a user from ground truth \(clicks, boxes, "
                                         r"masks\), which unlabeled inputs do not have; use a checkpoint trained "
                                         r"with an automatic prompt"):
        predict(toy_run, [str(tmp_path / "x.png")], tmp_path / "o", prompt="clicks", registry=plugins.registry)
    with pytest.raises(SamfxError, match="unsupported input type; use PNG/JPEG/TIFF images, NIfTI"):
        predict(toy_run, [str(toy_run / "recipe.yaml")], tmp_path / "o", registry=plugins.registry)
    with pytest.raises(SamfxError, match="no best.pt or last.pt in this folder"):
        predict(tmp_path, [str(tmp_path / "x.png")], tmp_path / "o", registry=plugins.registry)


def test_eval_and_predict_name_their_own_device_option(plugins, toy_run, tmp_path):
    from samfx.deploy.predict import predict
    from samfx.engine.eval import evaluate as E

    with pytest.raises(SamfxError, match=r"^--device mps: unknown device; use auto, cpu, cuda or cuda:N$"):
        E.evaluate(toy_run, split="val", registry=plugins.registry, device="mps")
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(SamfxError, match=r"^--device tpu: unknown device"):
        predict(toy_run, [str(tmp_path / "x.png")], tmp_path / "o", registry=plugins.registry, device="tpu")


def test_cli_train_eval_predict_with_toy_plugins(plugins, tmp_path, monkeypatch):
    from samfx.cli.main import app
    from samfx.contracts import plugins as pluginmanager

    monkeypatch.setattr(pluginmanager, "_CACHE", plugins)
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", str(TOY), "train.stages.0.max_steps=2", "--out", str(run), "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(run), "--split", "val", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["n_images"] == 4 and set(report["per_image"]) == {"LV", "MYO", "LA"}
    r = runner.invoke(app, ["eval", str(run), "--split", "val"])
    assert r.exit_code == 0 and "HD95 mm" in r.stdout and "LV" in r.stdout
    # --resume without the recipe, and NaN as a one-line error
    r = runner.invoke(app, ["train", "--resume", str(run)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", str(TOY), "train.stages.0.loss.nan_at_call=3", "--out", str(tmp_path / "n"),
                            "--quiet"])
    assert r.exit_code == 2
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: train.stages.0 'all' epoch 2 step 3: loss is nan;")
    from PIL import Image

    Image.fromarray(np.full((20, 25), 90, np.uint8)).save(tmp_path / "img.png")
    r = runner.invoke(app, ["predict", str(run / "last.pt"), str(tmp_path / "img.png"), "--out", str(tmp_path / "p"),
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["results"][0]["label"] == str(tmp_path / "p" / "img_label.png")
    r = runner.invoke(app, ["eval", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "no such checkpoint or run folder" in r.stderr

