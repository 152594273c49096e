"""`samfx export --quantize int8` (samfx.deploy.quantize): an int8 graph that passes the logit gate against
the fp32 graph, keeps samfx's metadata and runs in `samfx predict`; wrong combinations are one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samfx.deploy.onnx_runtime import OnnxModel
from samfx.deploy.precision import GATE_CORR, compare, probe_images
from samfx.engine.eval.inference import predict_classes
from samfx.engine.run import checkpoints as ckpt
from tests.toy_runs import random_quick_run

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A run folder holding the quick preset's model at random weights."""
    return random_quick_run(tmp_path_factory.mktemp("quick") / "run")


def test_int8_graph_passes_the_gate_and_predicts(quick_run, tmp_path, cli):
    import onnx
    from PIL import Image

    out = tmp_path / "q" / "model_int8.onnx"
    res = cli("export", quick_run, "--out", out, "--quantize", "int8")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().endswith("image size 128, int8)")
    graph = onnx.load(str(out))
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["precision"] == "int8" and json.loads(meta["classes"]) == [1, 2, 3]
    assert {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLinear"} & {n.op_type for n in graph.graph.node}
    model, _, _ = ckpt.load_model(quick_run / "best.pt")
    x = probe_images(128, n=2, seed=4)
    ref = predict_classes(model, x, [1, 2, 3])
    logits, labels = OnnxModel.load(out).run(x.numpy())
    gate = compare(ref.logits, torch.from_numpy(logits), ref.labels, torch.from_numpy(labels), "int8")
    assert gate.corr >= GATE_CORR and not np.allclose(logits, ref.logits.numpy(), atol=1e-6), gate
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(tmp_path / "im.png")
    res = cli("predict", out, tmp_path / "im.png", "--out", tmp_path / "pred")
    assert res.exit_code == 0, res.output
    res = cli("predict", out, tmp_path / "im.png", "--out", tmp_path / "pred2", "--precision", "bf16")
    assert res.exit_code == 2 and "--precision bf16: an exported ONNX model's precision is set at export" in res.output


def test_bad_quantize_options_are_one_line(quick_run, tmp_path, cli):
    res = cli("export", quick_run, "--out", tmp_path / "m.onnx", "--quantize", "int4")
    assert res.exit_code == 2 and "error: --quantize: unknown 'int4'; use int8" in res.output
    res = cli("export", quick_run, "--out", tmp_path / "m.onnx", "--quantize", "int8", "--part", "encoder",
              "--prompt", "clicks")
    assert res.exit_code == 2 and "only the end-to-end automatic model (--part all) is quantised" in res.output
    assert not (tmp_path / "m.onnx").exists()
