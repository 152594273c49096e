"""Low-precision inference (samfx.deploy.precision, docs/performance.md "CPU inference"): the CPU report, the
load-time gate and its refusal, and every precision `samfx predict --precision` offers passing its gates on
tiny models (random weights: logit correlation; a briefly trained run: label maps and Dice, marked slow)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samfx import api
from samfx.deploy import precision as P
from samfx.engine.bench.cpu import auto_precision, cpu_flags, cpu_info
from samfx.engine.eval.inference import predict_classes
from tests.toy_runs import random_quick_run

ROOT = Path(__file__).resolve().parents[1]
OFFERED = ("bf16", "int8", "int8-bf16")  # what --precision offers besides fp32 (auto resolves to one of them)
MODELS = {"samus_tiny": ("autosamus_msff_quick.yaml", []),                       # tiny SAMUS + MSFF + APG, 128²
          "sam2_hiera_tiny": ("apg_on_sam2_quick.yaml", ["model.image_encoder.image_size=128"])}


def _model(name: str):
    recipe, overrides = MODELS[name]
    if name.startswith("sam2"):
        pytest.importorskip("sam2")
    rec = api.load_recipe(ROOT / "recipes" / recipe, overrides)
    torch.manual_seed(0)
    return api.build_model(rec, load_checkpoint=False).eval(), [int(c) for c in rec.typed.data.classes]


def test_cpu_flags_from_cpuinfo_and_unknown_elsewhere(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_vnni "
                    "avx512_bf16\n\nprocessor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    name, flags = cpu_flags(info)
    assert name == "Test CPU 9000" and flags is not None and "avx512_bf16" in flags
    rep = cpu_info(info)
    assert rep["bf16_flags"] == ["avx512_bf16"] and rep["vnni_flags"] == ["avx512_vnni"] and rep["amx_flags"] == []
    assert rep["auto_precision"] == "bf16" and rep["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    missing = cpu_info(tmp_path / "absent")
    assert missing["bf16_flags"] is None and missing["auto_precision"] == "fp32"
    assert auto_precision({"avx2", "fma"}) == "fp32" and auto_precision({"amx_bf16"}) == "bf16"


def test_resolve_names_the_option_and_refuses_int8_on_cuda():
    with pytest.raises(P.SamfxError, match=r"^--precision: unknown precision 'fp8'; use one of auto, fp32"):
        P.resolve("fp8", "cpu")
    with pytest.raises(P.PrecisionRefused, match="CPU only"):
        P.resolve("int8", "cuda")
    assert P.resolve("auto", "cuda") == "bf16" and P.resolve("int8", "cpu") == "int8"
    assert P.resolve("auto", "cpu") == auto_precision(cpu_flags()[1])


@pytest.mark.parametrize("precision", OFFERED)
@pytest.mark.parametrize("name", list(MODELS))
def test_random_weights_pass_the_logit_gate(name, precision):
    """SAMUS (tiny) and SAM2 Hiera-tiny with random weights: logits correlate >= 0.999 with fp32's, on the
    load-time probe and on random images; and the precision does change the numbers (not a no-op)."""
    model, classes = _model(name)
    low, gate = P.prepare(model, precision, classes, None, what=name)
    assert gate is not None and gate.corr >= P.GATE_CORR, gate
    x = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(3))
    ref = predict_classes(model, x, classes)
    out = predict_classes(low, x, classes, precision=P.autocast_of(precision))
    res = P.compare(ref.logits, out.logits, ref.labels, out.labels, precision)
    assert res.corr >= P.GATE_CORR, res
    assert not torch.equal(ref.logits, out.logits)
    if precision.startswith("int8"):
        assert low is not model and any("quantized" in type(m).__module__ for m in low.modules())
        assert not any("quantized" in type(m).__module__ for m in model.modules())   # original untouched


def test_a_precision_missing_its_gate_is_refused_in_one_line(monkeypatch):
    model, classes = _model("samus_tiny")

    def broken(m, **_):  # a "quantisation" that wrecks the decoder: the gate must catch it
        bad = copy.deepcopy(m)
        with torch.no_grad():
            for p in bad.mask_decoder.parameters():
                p.mul_(-1.7).add_(0.3)
        return bad
    monkeypatch.setattr(P, "quantize_int8", broken)
    with pytest.raises(P.PrecisionRefused) as err:
        P.prepare(model, "int8", classes, None, what="runs/x/best.pt")
    msg = str(err.value)
    assert msg.startswith("--precision int8: refused for runs/x/best.pt: on the probe image its logits correlate ")
    assert "(gate 0.999" in msg and msg.endswith("use --precision fp32") and "\n" not in msg


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A run folder holding the quick preset's model at random weights."""
    return random_quick_run(tmp_path_factory.mktemp("quick") / "run")


def _image(path: Path) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :80]
    img = 60 + 120 * (((yy - 48) / 30) ** 2 + ((xx - 40) / 18) ** 2 < 1) + rng.integers(0, 40, (96, 80))
    Image.fromarray(img.astype(np.uint8)).save(path)
    return str(path)


def test_predict_and_load_run_at_each_precision(quick_run, tmp_path, cli):
    from PIL import Image

    img = _image(tmp_path / "im.png")
    labels = {}
    for p in ("fp32", *OFFERED):
        res = cli("predict", quick_run, img, "--out", tmp_path / p, "--precision", p, "--json")
        assert res.exit_code == 0, res.output
        assert json.loads((tmp_path / p / "predictions.json").read_text())["precision"] == p
        labels[p] = np.asarray(Image.open(tmp_path / p / "im_label.png"))
    run = api.load_run(quick_run, precision="int8", device="cpu")
    assert run.precision == "int8"
    arr = np.asarray(Image.open(img))
    assert np.array_equal(run.segment(arr), labels["int8"])
    res = cli("predict", quick_run, img, "--out", tmp_path / "bad", "--precision", "fp8")
    assert res.exit_code == 2 and "error: --precision: unknown precision 'fp8'" in res.output


def test_cpu_info_in_doctor_json(cli):
    res = cli("doctor", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["cpu_isa_torch"] == torch.backends.cpu.get_cpu_capability()
    assert {"cpu", "cpu_bf16", "cpu_vnni", "cpu_amx", "auto_precision"} <= rep.keys()


@pytest.mark.slow
def test_trained_tiny_run_keeps_label_maps_and_dice(tmp_path):
    """The quick preset trained briefly on synthetic echo: on its test split every offered precision's label
    maps agree with fp32's on >= 99 % of pixels and each class's Dice is within 0.5 points of fp32's."""
    from samfx.contracts.plugins import get_registry
    from samfx.data.datasets import ImageDataset
    from samfx.engine.run.loaders import store_path

    overrides = ["data.source.patients=16", "data.source.version=1", "train.stages.0.max_steps=150",
                 "train.stages.0.epochs=3", "train.stages.1.max_steps=90", "train.stages.1.epochs=3"]
    rec = api.load_recipe(ROOT / "recipes" / "autosamus_msff_quick.yaml", overrides)
    out = api.train(rec, tmp_path / "run")
    run = api.load_run(out["run"], device="cpu")
    store = store_path(rec.config["data"]["source"], get_registry(), "data.source")
    ds = ImageDataset(store, "test", run.model.image_size)
    items = [ds[i] for i in range(min(len(ds), 24))]
    images = torch.stack([torch.as_tensor(it["image"]) for it in items]).float()   # as eval's to_device
    labels = torch.stack([torch.as_tensor(it["label"]).long() for it in items])
    rows = P.gate_table(run.model, images, labels, run.classes, run.prompt, OFFERED)
    assert rows["fp32"]["dice"][1] > 30, rows          # the model learned something: the gate is not vacuous
    for p in OFFERED:
        assert rows[p]["agree"] >= P.GATE_AGREE, (p, rows[p])
        assert rows[p]["dice_delta"] <= 0.5, (p, rows[p])
