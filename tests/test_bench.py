"""`samfx bench`: the JSON report's schema on a tiny recipe (one eager fp32 step), and its input errors.
No timing assertions: only that numbers are there and positive."""
from __future__ import annotations

import json

import pytest
import torch

TINY = ["recipes/samus.yaml", "model.image_encoder.size=tiny", "model.image_encoder.image_size=128"]
ONE_STEP = ["--steps", "1", "--warmup", "0", "--mode", "eager", "--precision", "fp32"]

ROW_KEYS = {"mode": str, "stage": str, "compiled": bool, "precision": str, "batch": int, "img_per_s": float,
            "step_ms": float, "step_ms_min": float, "first_step_s": float, "peak_mem_gib": float,
            "start_mem_gib": float, "peak_reserved_gib": float, "load_avg": float, "profile": str, "error": str}
INFO_KEYS = {"device", "device_type", "torch", "threads", "recipe", "overrides", "image_size", "queries_per_image",
             "params_total", "stages", "infer_prompt", "fast_attention", "rel_pos_mode", "channels_last",
             "activation_checkpointing", "compile_mode", "steps", "warmup", "memory"}


def test_bench_json_schema(samfx_cli, tmp_path):
    out = tmp_path / "bench.json"
    res = samfx_cli("bench", *TINY, *ONE_STEP, "--batch", "2", "--infer-batch", "1", "--device", "cpu",
                    "--threads", "1", "--json", "--out", str(out), "--profile", str(tmp_path / "prof"))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert json.loads(out.read_text()) == report
    assert report["schema"] == 1 and report["complete"] is True and INFO_KEYS <= set(report["info"])
    info = report["info"]
    assert (info["device_type"], info["image_size"], info["queries_per_image"], info["threads"]) == ("cpu", 128, 3, 1)
    assert info["stages"] == {"samus": {"trainable": info["stages"]["samus"]["trainable"], "prompt": "clicks"}}
    assert 0 < info["stages"]["samus"]["trainable"] < info["params_total"]
    assert info["rel_pos_mode"] == "bias" and info["fast_attention"] is True
    rows = report["results"]
    assert [(r["mode"], r["stage"], r["batch"], r["compiled"], r["precision"]) for r in rows] == [
        ("train", "samus", 2, False, "fp32"), ("infer", "clicks", 1, False, "fp32")]
    for r in rows:
        assert set(r) == set(ROW_KEYS) and all(isinstance(r[k], t) for k, t in ROW_KEYS.items()), r
        assert r["error"] == ""
        assert r["img_per_s"] > 0 and r["step_ms"] >= r["step_ms_min"] > 0
        assert r["peak_mem_gib"] >= r["start_mem_gib"] > 0
        assert r["profile"].startswith(str(tmp_path / "prof")) and "Self CPU" in open(r["profile"]).read()


def test_bench_reference_path_stage_selection_and_recipe_batch():
    from samfx.engine.bench.run import run_bench

    report = run_bench(TINY[0], [*TINY[1:], "model.image_encoder.fast_attention=false", "data.batch_size=1"],
                       device="cpu", infer_batches=(1,), steps=1, warmup=0, modes=("eager",), precisions=("fp32",),
                       stages=["0"], only="train")
    assert report["info"]["rel_pos_mode"] == "reference"
    assert [(r["mode"], r["stage"], r["batch"], r["error"]) for r in report["results"]] == [("train", "samus", 1, "")]


@pytest.mark.parametrize("args,message", [
    (["--mode", "fast"], "error: bench: unknown mode/precision 'fast'; modes: eager, compiled"),
    (["--precision", "fp16"], "error: bench: unknown mode/precision 'fp16'"),
    (["--stage", "nope"], "error: --stage 'nope': the recipe's stages are samus (or indices 0..0)"),
    (["--steps", "0"], "error: --steps 0: must be >= 1"),
    (["--only", "both"], "error: --only 'both': use train or infer"),
    (["--compile-mode", "fastest"], "error: --compile-mode 'fastest': use default, reduce-overhead"),
    (["model.image_encoder.sise=tiny"], "model.image_encoder.sise: unknown key, did you mean 'size'?"),
])
def test_bench_input_errors(samfx_cli, args, message):
    res = samfx_cli("bench", "recipes/samus.yaml", *args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_cuda_missing_is_a_clear_error():
    from samfx.contracts.errors import SamfxError
    from samfx.engine.run.distributed import resolve_device

    with pytest.raises(SamfxError, match=r"--device cuda: no CUDA device is visible to torch .*; use --device cpu"):
        resolve_device("cuda", option="--device ")
    with pytest.raises(SamfxError, match=r"^train.device=cuda:1: no CUDA device .*; use train.device=cpu \(or auto\)$"):
        resolve_device("cuda:1")
    with pytest.raises(SamfxError, match=r"^--device mps: unknown device; use auto, cpu, cuda or cuda:N$"):
        resolve_device("mps", option="--device ")


def test_synthetic_labels_have_every_class():
    from samfx.engine.bench.run import synthetic_labels

    a = synthetic_labels(3, 64, [1, 2, 3], torch.Generator().manual_seed(0))
    b = synthetic_labels(3, 64, [1, 2, 3], torch.Generator().manual_seed(0))
    assert a.shape == (3, 64, 64) and a.dtype == torch.long and torch.equal(a, b)
    assert set(a.unique().tolist()) == {0, 1, 2, 3}
    assert 0.3 < (a == 0).float().mean().item() < 0.99
