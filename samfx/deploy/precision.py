"""Inference precision for ``samfx predict --precision``, ``api.predict`` / ``load_run`` (docs/performance.md).

Precisions:
    fp32  the model as trained (the reference every other precision is gated against)
    bf16  bfloat16 autocast (oneDNN on CPU: native bf16 dot products with avx512_bf16 / AMX; without
          them bf16 may well be slower than fp32, so ``auto`` keeps fp32 there)
    int8  the image encoder's Linear layers quantised dynamically to int8 (``quantize_dynamic``: int8 weights
          per output channel, activations quantised per call; fbgemm/oneDNN use VNNI where the CPU has
          it); CPU only
    int8-bf16  int8 as above, and everything else (attention, convolutions) under bf16 autocast: the
          fastest path measured on a CPU with avx512_bf16 + VNNI; CPU only
    auto  CUDA: bf16; CPU: bf16 where the CPU has native bf16 dot products, else fp32
          (:func:`samfx.engine.bench.cpu.auto_precision`; auto never picks an int8 path, which
          changes the weights, on its own)

A precision other than fp32 must pass its accuracy gate on the model before it is used
(:func:`check_gate`, at load): one probe image (deterministic, smooth) through fp32 and through the chosen
precision; the per-class logits must correlate >= ``GATE_CORR`` with fp32's, else a one-line
:class:`PrecisionRefused` names the model, the measured value and the gate. Costs one fp32 and one
low-precision forward of one image. The label-map gates (>= ``GATE_AGREE`` of pixels equal to fp32's, test
Dice within 0.5 points) need a trained model and real images: they are tests on tiny trained runs and
numbers in docs/performance.md, not a load-time check (on random weights most logits sit near 0, where
any rounding flips a label; the agreement is still measured and reported).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samfx.contracts.errors import SamfxError
from samfx.engine.bench.cpu import auto_precision, cpu_flags
from samfx.engine.eval.metrics import dice

PRECISIONS = ("auto", "fp32", "bf16", "int8", "int8-bf16")
INT8 = ("int8", "int8-bf16")
GATE_CORR = 0.999     # Pearson correlation of the per-class logits with fp32's
GATE_AGREE = 0.99     # share of label-map pixels equal to fp32's


class PrecisionRefused(SamfxError):
    """A precision that misses its accuracy gate on a model, or that the device cannot run."""


def resolve(precision: str, device_type: str, *, option: str = "--precision") -> str:
    """`precision` checked and ``auto`` resolved for a device type ("cpu" / "cuda"): fp32, bf16 or int8."""
    if precision not in PRECISIONS:
        raise SamfxError(f"{option}: unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device_type == "cuda" else auto_precision(cpu_flags()[1])
    if precision in INT8 and device_type != "cpu":
        raise PrecisionRefused(f"{option} {precision}: dynamic int8 quantisation runs on the CPU only, not on "
                               f"{device_type}; use bf16 there, or --device cpu")
    return precision


def autocast_of(precision: str) -> str:
    """The autocast precision a resolved precision runs under (int8: the quantised model runs in fp32;
    int8-bf16: in bf16, its int8 Linear layers fed fp32)."""
    return {"int8": "fp32", "int8-bf16": "bf16"}.get(precision, precision)


class Fp32Input(torch.nn.Module):
    """Runs a dynamically quantised Linear outside autocast on an fp32 input (its kernel takes fp32 only), so
    the int8 Linear layers and bf16 autocast (attention, convolutions) can share one forward."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.inner(x.float())


def _wrap_quantized(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if type(child).__module__.startswith("torch.ao.nn.quantized"):
            setattr(module, name, Fp32Input(child))
        else:
            _wrap_quantized(child)


def quantize_int8(model: Any, *, bf16_rest: bool = False) -> Any:
    """A copy of `model` whose image encoder's ``nn.Linear`` layers are dynamically quantised to int8
    (per-output-channel weight scales, per-call activation scales); convolutions, attention, norms, the
    prompt generator and the mask decoder stay fp32. The original is untouched. Measured choices (random
    weights, logit correlation with fp32): per-tensor weights gave SAMUS vit_b 0.9989 (under the 0.999
    gate), per-channel 0.9993; quantising the mask decoder too took SAM2 Hiera-tiny from 0.9996 down to
    0.9988, for a part that is a few % of the time. `bf16_rest`: wrap them in :class:`Fp32Input` for
    int8-bf16."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    quantized = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.10 points users at torchao; the API still works
        quantized.image_encoder = quantize_dynamic(quantized.image_encoder,
                                                   {torch.nn.Linear: per_channel_dynamic_qconfig})
    if bf16_rest:   # int8-bf16: the quantised layers get fp32 inputs inside the bf16 autocast region
        _wrap_quantized(quantized.image_encoder)
    return quantized


def probe_images(size: int, n: int = 1, seed: int = 0) -> Any:
    """Deterministic smooth gray probe images (n,3,S,S) in [0,1]: blurred noise plus bright and dark
    ellipses, echo-like enough that a trained model's logits span both signs."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    noise = F.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 9, stride=1, padding=4)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blobs = torch.zeros(n, 1, size, size)
    for i in range(n):
        cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([0.8, 0.8, 0.3]) + torch.tensor([-0.4, -0.4, 0.2]))
        blobs[i, 0] = (((xx - cx) / r) ** 2 + ((yy - cy) / (1.5 * r)) ** 2 < 1).float() * 0.6
    return (0.3 * noise + blobs + 0.1).clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


@dataclass
class GateResult:
    """What :func:`check_gate` measured: logit correlation and label agreement with fp32."""

    precision: str
    corr: float
    agree: float

    @property
    def passed(self) -> bool:
        return self.corr >= GATE_CORR


def compare(ref_logits: Any, logits: Any, ref_labels: Any, labels: Any, precision: str) -> GateResult:
    """Correlation of two logit tensors (float64) and the share of equal label-map pixels."""

    a, b = ref_logits.double().flatten(), logits.double().flatten()
    corr = 1.0 if torch.equal(a, b) else float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    return GateResult(precision, corr, float((ref_labels == labels).double().mean()))


def check_gate(model: Any, low_model: Any, precision: str, classes: list[int], prompt: str | None,
               *, what: str = "the model") -> GateResult:
    """Run :func:`probe_images` through `model` in fp32 and `low_model` at `precision`; a
    :class:`PrecisionRefused` (one line: what, measured value, gate, what to use) when it misses."""
    from samfx.engine.eval.inference import predict_classes

    x = probe_images(model.image_size).to(next(model.parameters()).device)
    ref = predict_classes(model, x, classes, prompt=prompt, precision="fp32")
    low = predict_classes(low_model, x, classes, prompt=prompt, precision=autocast_of(precision))
    res = compare(ref.logits, low.logits, ref.labels, low.labels, precision)
    if not res.passed:
        raise PrecisionRefused(f"--precision {precision}: refused for {what}: on the probe image its logits "
                               f"correlate {res.corr:.5f} with fp32's (gate {GATE_CORR}; {res.agree:.2%} of label "
                               f"pixels agree); use --precision fp32")
    return res


def prepare(model: Any, precision: str, classes: list[int], prompt: str | None, *, check: bool = True,
            what: str = "the model") -> tuple[Any, GateResult | None]:
    """(the model to run at `precision` (resolved: fp32 | bf16 | int8 | int8-bf16), its gate result): the
    int8 paths return a quantised copy, bf16 the model itself (run under autocast); with `check` a
    non-fp32 precision must pass :func:`check_gate` first (else :class:`PrecisionRefused`)."""
    if precision == "fp32":
        return model, None
    device_type = next(model.parameters()).device.type
    if precision in ("bf16", "int8-bf16") and device_type == "cpu":
        if not torch.backends.mkldnn.is_available():
            raise PrecisionRefused(f"--precision {precision}: this torch build has no oneDNN (mkldnn) for bf16 on the "
                                   "CPU; use fp32")
    low = quantize_int8(model, bf16_rest=precision == "int8-bf16") if precision in INT8 else model
    result = check_gate(model, low, precision, classes, prompt, what=what) if check else None
    return low, result


def for_inference(model: Any, recipe_precision: str, precision: str | None, device: Any, classes: list[int],
                  prompt: str | None, *, what: str = "the model") -> tuple[Any, str]:
    """(the model to run, its resolved precision) for predict / load_run. `precision` None keeps what
    inference did before: the recipe's ``train.precision`` (auto: bf16 on CUDA, fp32 on CPU), unchecked.
    Otherwise :func:`resolve` then :func:`prepare` (gate-checked on the probe; `what` names the model in
    a refusal)."""
    if precision is None:
        from samfx.engine.eval.inference import resolve_precision

        return model, resolve_precision(recipe_precision, device)
    chosen = resolve(precision, device.type)
    low, _ = prepare(model, chosen, classes, prompt, what=what)
    return low, chosen


def dice_per_class(pred: Any, label: Any, classes: list[int]) -> dict[int, float]:
    """Mean over images of each class's Dice (x100) between label maps (N,H,W); images where the class is
    absent from both are left out of its mean (nan when it is absent everywhere)."""

    pred, label = pred.cpu().numpy(), label.cpu().numpy()
    out: dict[int, float] = {}
    for c in classes:
        scores = [dice(p == c, t == c) for p, t in zip(pred, label) if (p == c).any() or (t == c).any()]
        out[c] = 100 * float(np.mean(scores)) if scores else float("nan")
    return out


def gate_table(model: Any, images: Any, labels: Any, classes: list[int], prompt: str | None,
               precisions: tuple[str, ...] = ("bf16", "int8"), batch: int = 8) -> dict[str, dict[str, Any]]:
    """The documented gates of each precision against fp32 on labeled images (N,3,S,S) / label maps (N,S,S):
    ``corr`` (logits), ``agree`` (label-map pixels equal to fp32's), ``dice`` per class and ``dice_delta``
    (largest |Dice - fp32's Dice| over the classes, in points). fp32's row holds its own Dice."""

    from samfx.engine.eval.inference import predict_classes

    rows: dict[str, dict[str, Any]] = {}
    ref_logits, ref_labels = None, None
    for p in ("fp32", *precisions):
        low, _ = prepare(model, p, classes, prompt, check=False)
        parts = [predict_classes(low, images[i:i + batch], classes, prompt=prompt, precision=autocast_of(p))
                 for i in range(0, len(images), batch)]
        logits, pred = torch.cat([r.logits for r in parts]), torch.cat([r.labels for r in parts])
        if ref_logits is None:
            ref_logits, ref_labels = logits, pred
        res = compare(ref_logits, logits, ref_labels, pred, p)
        rows[p] = {"corr": res.corr, "agree": res.agree, "dice": dice_per_class(pred, labels, classes)}
    for p in precisions:
        rows[p]["dice_delta"] = max(abs(rows[p]["dice"][c] - rows["fp32"]["dice"][c]) for c in classes)
    return rows
