"""``samfx export --quantize int8``: the exported ONNX graph with its MatMul / Gemm weights quantised to int8
by onnxruntime's ``quantize_dynamic`` (per-tensor int8 weights, uint8 activations quantised per call:
``DynamicQuantizeMatMul`` / ``MatMulInteger``, VNNI where the CPU has it; per-channel weights make
onnxruntime 1.32 fail at run time on the exported graph's MatMulInteger nodes), then gated against the fp32 graph
on the probe images of :func:`samfx.deploy.precision.probe_images` (docs/deploying.md)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from samfx.contracts.errors import SamfxError, first_line
from samfx.data.files import atomic_write
from samfx.deploy.precision import GATE_CORR, GateResult, PrecisionRefused, compare, probe_images

QUANTIZE = ("int8",)


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """Quantise the graph at `src` into `dst` (written atomically), keeping its samfx metadata and adding
    ``precision: int8``. Needs onnxruntime (the export extra)."""
    import onnx

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]
    except ImportError:
        raise SamfxError("--quantize int8: onnxruntime is not installed; pip install 'samfx[export]'") from None
    src, dst = Path(src), Path(dst).expanduser()
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SamfxError(f"--out {dst}: cannot create its folder ({first_line(exc)}); choose a writable path") from None
    try:
        with tempfile.TemporaryDirectory(dir=dst.parent) as work:   # quantize_dynamic writes to a path
            tmp = Path(work) / "int8.onnx"
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=False,
                             op_types_to_quantize=["MatMul", "Gemm"])
            meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
            graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, {**meta, "precision": "int8"})
        atomic_write(dst, lambda fh: fh.write(graph.SerializeToString()))
    except Exception as exc:
        if isinstance(exc, SamfxError):
            raise
        raise SamfxError(f"--quantize int8: onnxruntime could not quantise {src} ({first_line(exc)[:200]}); "
                         f"export without --quantize") from None
    return dst


def check_onnx_gate(fp32_path: str | Path, int8_path: str | Path, *, what: str) -> GateResult:
    """Run the probe image through both graphs; :class:`PrecisionRefused` (one line) when the int8 graph's
    logits correlate < ``GATE_CORR`` with fp32's (samfx.deploy.precision's load-time gate)."""
    import torch

    from samfx.deploy.onnx_runtime import OnnxModel

    ref, low = OnnxModel.load(fp32_path), OnnxModel.load(int8_path)
    x = probe_images(ref.image_size).numpy()
    (a, la), (b, lb) = ref.run(x), low.run(x)
    res = compare(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(la), torch.from_numpy(lb), "int8")
    if not res.passed:
        raise PrecisionRefused(f"--quantize int8: refused for {what}: on the probe image the int8 graph's logits "
                               f"correlate {res.corr:.5f} with fp32's (gate {GATE_CORR}; {res.agree:.2%} of label "
                               f"pixels agree); export without --quantize")
    return res

