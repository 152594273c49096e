"""`samfx export --format onnx` and `samfx predict --engine onnx` (docs/deploying.md): onnx.checker,
onnxruntime parity with PyTorch eager fp32 (logits within 1e-3, identical label maps) at batch 1 and 3 on
one dynamic-batch graph, the metadata, the encoder / decoder parts of a click model, one-line refusals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samfx import api
from samfx.contracts.interfaces import ImageFeatures, Prompts
from samfx.deploy.export_onnx import OPSET, export_model, export_onnx, recipe_hash
from samfx.engine.eval.inference import predict_classes
from samfx.engine.run import checkpoints as ckpt
from tests.cli_inprocess import cli, one_line
from tests.toy_runs import train_toy

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-3
SAMUS_TINY = ["model.image_encoder.size=tiny", "model.image_encoder.image_size=128"]


def random_run(folder: Path, recipe: str, *overrides: str, prompt: str | None = None) -> Path:
    """A run folder holding best.pt with the recipe's model at random weights (nothing trained)."""
    rec = api.load_recipe(ROOT / "recipes" / recipe, list(overrides))
    torch.manual_seed(0)
    model = api.build_model(rec, load_checkpoint=False)
    if prompt is not None:
        model.use_prompt(prompt)
    folder.mkdir(parents=True)
    ckpt.save(ckpt.make(model, rec), folder / "best.pt")
    return folder


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_graph(path: Path, part: str = "all") -> dict[str, str]:
    """onnx.checker passes, the opset, the metadata; nothing but the .onnx file was written."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    meta = {p.key: p.value for p in proto.metadata_props}
    for key in ("classes", "class_names", "image_size", "pixel_scaling", "samfx_version", "recipe_sha256"):
        assert meta.get(key), key
    assert meta["part"] == part and len(meta["recipe_sha256"]) == 64
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return meta


def check_parity(model, path: Path, classes: list[int]) -> float:
    """Batch 1 and 3 through the one graph; returns the largest |logit difference|."""
    sess = session(path)
    assert isinstance(sess.get_inputs()[0].shape[0], str)  # dynamic batch
    s = model.image_size
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for n in (1, 3):
        x = torch.rand(n, 3, s, s, generator=g)
        ref = predict_classes(model, x, classes)
        logits, labels = sess.run(["logits", "labels"], {"images": x.numpy()})
        assert logits.shape == (n, len(classes), s, s) and labels.shape == (n, s, s)
        assert logits.dtype == np.float32 and labels.dtype == np.int64
        worst = max(worst, float(np.abs(logits - ref.logits.numpy()).max()))
        assert np.array_equal(labels, ref.labels.numpy())
    assert worst <= TOL, worst
    return worst


# -- the quick model: tiny SAMUS + MSFF + APG ------------------------------------------------------------
@pytest.fixture(scope="module")
def samus_run(tmp_path_factory):
    return random_run(tmp_path_factory.mktemp("samus") / "run", "autosamus_msff_quick.yaml")


def test_quick_model_exports_end_to_end_with_parity(samus_run, tmp_path):
    out = tmp_path / "onnx" / "model.onnx"
    res = cli("export", samus_run, "--format", "onnx", "--out", out)
    assert res.exit_code == 0, res.output
    assert f"wrote {out} (part all, opset {OPSET}, classes [1, 2, 3], image size 128)" in res.stdout
    meta = check_graph(out)
    assert json.loads(meta["classes"]) == [1, 2, 3] and json.loads(meta["class_names"]) == ["LV", "MYO", "LA"]
    assert meta["image_size"] == "128" and meta["prompt"] == "apg" and "[0,1]" in meta["pixel_scaling"]
    model, recipe, _ = ckpt.load_model(samus_run / "best.pt")
    assert meta["recipe_sha256"] == recipe_hash(recipe)
    check_parity(model, out, [1, 2, 3])


def test_quick_model_in_plain_onnxruntime_as_docs_deploying_shows(samus_run, tmp_path, monkeypatch, capsys):
    """docs/deploying.md's onnxruntime snippet runs as pasted, next to a model.onnx and an image.png."""
    from PIL import Image

    export_onnx(samus_run, tmp_path / "model.onnx")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80), dtype=np.uint8)).save(tmp_path / "image.png")
    doc = (ROOT / "docs" / "deploying.md").read_text()
    snippet = doc.split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "deploying.md", "exec"), {})
    assert capsys.readouterr().out.startswith("{'LV': 1, 'MYO': 2, 'LA': 3} (1, 128, 128)")


def test_click_model_is_refused_end_to_end_and_exports_as_two_parts(samus_run, tmp_path):
    line = one_line(cli("export", samus_run, "--prompt", "clicks", "--out", tmp_path / "m.onnx"),
                    "prompt 'clicks' needs clicks or boxes", "--part encoder", "--part decoder")
    assert not (tmp_path / "m.onnx").exists(), line
    enc, dec = tmp_path / "enc" / "encoder.onnx", tmp_path / "dec" / "decoder.onnx"
    assert cli("export", samus_run, "--prompt", "clicks", "--part", "encoder", "--out", enc).exit_code == 0
    assert cli("export", samus_run, "--prompt", "clicks", "--part", "decoder", "--out", dec).exit_code == 0
    check_graph(enc, "encoder")
    check_graph(dec, "decoder")
    model, _, _ = ckpt.load_model(samus_run / "best.pt")
    s = model.image_size
    g = torch.Generator().manual_seed(2)
    for n in (1, 3):
        x = torch.rand(n, 3, s, s, generator=g)
        coords = torch.rand(n, 1, 2, generator=g) * s
        labels = torch.ones(n, 1)
        with torch.no_grad():  # samfx's own path: the prompt encoder pads with one "not a point"
            emb = model.encode(x).embedding
            sparse, dense = model.prompt_encoder.encode(n, points=(coords, labels.long()))
            pe = model.prompt_encoder.get_dense_pe()
            ref = model.decode_prompts(ImageFeatures(emb), 1, pe, Prompts(sparse=sparse, dense=dense), None)
        (emb_onnx,) = session(enc).run(None, {"images": x.numpy()})
        assert np.abs(emb_onnx - emb.numpy()).max() <= TOL
        pad_c = torch.cat([coords, torch.zeros(n, 1, 2)], 1).numpy()    # as SAM's ONNX example does
        pad_l = torch.cat([labels, -torch.ones(n, 1)], 1).numpy()
        masks, iou = session(dec).run(None, {"image_embeddings": emb.numpy(), "point_coords": pad_c,
                                             "point_labels": pad_l})
        assert masks.shape == (n, 1, s, s) and iou.shape == (n, 1)
        assert np.abs(masks - ref.logits.numpy()).max() <= TOL
        assert np.abs(iou - ref.iou.numpy()).max() <= TOL
        assert np.array_equal(masks > 0, ref.logits.numpy() > 0)


# -- tiny SAM + APG ------------------------------------------------------------------------------------
@pytest.mark.slow  # 20-60 s of ONNX export; the quick model's parity runs in make test
def test_sam_with_apg_exports_with_parity(tmp_path):
    rec = api.load_recipe(ROOT / "recipes" / "apg_on_sam.yaml", SAMUS_TINY + ["model.image_encoder.out_dim=64"])
    torch.manual_seed(0)
    model = api.build_model(rec, load_checkpoint=False).eval()
    out = tmp_path / "sam" / "sam_apg.onnx"
    res = export_model(model, rec, out)
    assert res.exporter == "torch.onnx.export(dynamo=True)" and res.opset == OPSET
    check_graph(out)
    check_parity(model, out, [1, 2, 3])


@pytest.mark.slow  # 20-60 s of ONNX export; the quick model's parity runs in make test
def test_sam2_with_apg_exports_with_parity(tmp_path):
    """SAM2's Hiera encoder (+ FPN levels through its decoder) under the APG: 4.0e-7 measured at 128²."""
    pytest.importorskip("sam2")
    rec = api.load_recipe(ROOT / "recipes" / "apg_on_sam2_quick.yaml", ["model.image_encoder.image_size=128"])
    torch.manual_seed(0)
    model = api.build_model(rec, load_checkpoint=False).eval()
    out = tmp_path / "sam2" / "sam2_apg.onnx"
    export_model(model, rec, out)
    check_graph(out)
    check_parity(model, out, [1, 2, 3])


# -- the toy run: export, then predict through both engines ---------------------------------------------
@pytest.fixture(scope="module")
def toy_plugins():
    from samfx.engine.testing import toy_plugins as make

    return make()


def test_toy_run_predicts_the_same_label_maps_with_either_engine(toy_plugins, tmp_path_factory, tmp_path):
    from PIL import Image

    run = train_toy(tmp_path_factory.mktemp("toy") / "run", toy_plugins, "train.stages.0.max_steps=2")
    out = tmp_path / "toy.onnx"
    export_onnx(run, out, registry=toy_plugins.registry)
    check_graph(out)
    model, _, _ = ckpt.load_model(run / "best.pt", toy_plugins.registry)
    check_parity(model, out, [1, 2, 3])
    rng = np.random.default_rng(0)
    images = []
    for i, shape in enumerate([(30, 45), (32, 32), (50, 20)]):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / f"im{i}.png")
        images.append(str(tmp_path / f"im{i}.png"))
    torch_rep = api.predict(run, images, tmp_path / "torch", registry=toy_plugins.registry, engine="torch")
    onnx_rep = api.predict(out, images, tmp_path / "onnx")   # engine from the .onnx suffix
    assert torch_rep["engine"] == "torch" and onnx_rep["engine"] == "onnx"
    assert onnx_rep["classes"] == torch_rep["classes"] == {"LV": 1, "MYO": 2, "LA": 3}
    for i, shape in enumerate([(30, 45), (32, 32), (50, 20)]):
        a = np.asarray(Image.open(tmp_path / "torch" / f"im{i}_label.png"))
        b = np.asarray(Image.open(tmp_path / "onnx" / f"im{i}_label.png"))
        assert a.shape == shape and np.array_equal(a, b), i
    res = cli("predict", out, images[0], "--out", tmp_path / "cli", "--engine", "onnx")
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli" / "im0_label.png")),
                          np.asarray(Image.open(tmp_path / "torch" / "im0_label.png")))


# -- refusals: one line each --------------------------------------------------------------------------
def test_temporal_model_is_refused(tmp_path):
    run = random_run(tmp_path / "stm", "samus_stm.yaml", *SAMUS_TINY)
    one_line(cli("export", run, "--out", tmp_path / "m.onnx"), "temporal module", "stm")
    one_line(cli("export", run, "--part", "encoder", "--out", tmp_path / "m.onnx"), "temporal module")
    assert not (tmp_path / "m.onnx").exists()


def test_bad_options_are_one_line_errors(tmp_path):
    one_line(cli("export", tmp_path, "--format", "tflite", "--out", tmp_path / "m.onnx"), "--format", "onnx")
    one_line(cli("export", tmp_path / "none", "--out", tmp_path / "m.onnx"), "no such checkpoint")
    (tmp_path / "m.onnx").write_bytes(b"not onnx")
    (tmp_path / "a.png").write_bytes(b"")
    one_line(cli("predict", tmp_path / "m.onnx", tmp_path / "a.png", "--out", tmp_path / "o", "--engine", "torch"),
             "--engine torch needs the run folder")
    one_line(cli("predict", tmp_path, tmp_path / "a.png", "--out", tmp_path / "o", "--engine", "onnx"),
             "--engine onnx runs an exported .onnx file", "samfx export")
    one_line(cli("predict", tmp_path, tmp_path / "a.png", "--out", tmp_path / "o", "--engine", "tvm"),
             "unknown engine 'tvm'")
