"""``samfx export RUN --format onnx``: a trained model as one ONNX graph (docs/deploying.md).

``--part all`` (default): the automatic model end to end, image encoder + adapters + automatic prompt
generator (APG) + mask decoder + upsampling, every class of the run queried:

    input   images  (N,3,S,S) float32 in [0,1] (gray repeated to 3 channels; no mean/std)
    outputs logits  (N,K,S,S) float32 per-class mask logits at S x S, K = len(classes), in classes' order
            labels  (N,S,S)   int64 label map: the class with the highest logit where it is > 0, else 0

``--part encoder|decoder`` (prompted models, e.g. clicks): the encoder (images -> image embedding) and
the decoder as SAM's own ONNX export (segment_anything/utils/onnx.py) takes it: image embedding,
point_coords (N,P,2) xy pixels and point_labels (N,P) float (1 fg, 0 bg, -1 padding; a box is two points
labelled 2 and 3) -> mask logits (N,1,S,S) and IoU (N,1).

The batch axis N is dynamic. The metadata (``metadata_props``) hold what a runtime needs to feed the
graph: classes, class names, image size, pixel scaling, samfx version, the recipe's SHA-256.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import samfx
from samfx.contracts.errors import SamfxError, first_line
from samfx.contracts.interfaces import DecoderInput, ImageFeatures
from samfx.contracts.plugins import get_registry
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import rundir

OPSET = 18
PARTS = ("all", "encoder", "decoder")
PIXEL_SCALING = ("gray uint8 / 255 -> float32 in [0,1], repeated to 3 channels, resized to image_size x "
                 "image_size (bilinear, antialiased); no mean/std normalisation")


class AutomaticModel(nn.Module):
    """Images (N,3,S,S) -> (per-class logits (N,K,S,S), label map (N,S,S) int64): ``forward_classes``
    over every class, then :func:`samfx.engine.eval.inference.label_map`'s rule."""

    class_ids: Tensor

    def __init__(self, model: Any, classes: list[int], prompt: str):
        super().__init__()
        self.model = model
        self.prompt = prompt
        self.k = len(classes)
        self.register_buffer("class_ids", torch.tensor(classes, dtype=torch.long), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        n, s = images.shape[0], images.shape[-1]
        features = self.model.encode(images)
        cls = self.class_ids.repeat(n)                         # image-major (image, class) queries
        out = self.model.decode(features, cls, None, prompt=self.prompt)
        logits = out.logits.float().reshape(n, self.k, s, s)
        best, idx = logits.max(dim=1)
        labels = torch.where(best > 0, self.class_ids[idx], torch.zeros_like(idx))
        return logits, labels


class EncoderPart(nn.Module):
    """Images (N,3,S,S) -> image embedding (N,C,h,w)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.encode(images).embedding


class DecoderPart(nn.Module):
    """As SAM's SamOnnxModel without mask input: (image embedding (N,C,h,w), point_coords (N,P,2) in
    pixels of the S x S input, point_labels (N,P) float) -> (mask logits (N,1,S,S), IoU (N,1)). Label -1
    is padding, 2 and 3 a box's top-left and bottom-right corners."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model
        pe = model.prompt_encoder
        self.pe = pe
        self.embed_dim = int(model.context.embed_dim)
        self.image_size = int(model.image_size)

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        pe = self.pe
        coords = coords + 0.5
        coords = coords / self.image_size
        emb = pe.pe_layer._pe_encoding(coords)
        labels = labels.unsqueeze(-1)
        emb = emb * (labels != -1)
        emb = emb + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):
            emb = emb + pe.point_embeddings[i].weight * (labels == i)
        return emb

    def forward(self, image_embeddings: Tensor, point_coords: Tensor, point_labels: Tensor) -> tuple[Tensor, Tensor]:
        n = image_embeddings.shape[0]
        h, w = image_embeddings.shape[-2:]
        sparse = self._embed_points(point_coords, point_labels)
        dense = self.pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, h, w)
        decoded = self.model.mask_decoder(DecoderInput(ImageFeatures(image_embeddings), self.pe.get_dense_pe(),
                                                       sparse, dense, 1))
        logits = F.interpolate(decoded.low_res, size=(self.image_size, self.image_size), mode="bilinear",
                               align_corners=False)
        return logits, decoded.iou


@dataclass
class ExportResult:
    path: Path
    part: str
    opset: int
    metadata: dict[str, str]
    exporter: str


def recipe_hash(recipe: Any) -> str:
    """SHA-256 of the recipe's resolved config as canonical JSON."""
    text = json.dumps(recipe.config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _refusal(model: Any, prompt_needs_targets: bool, part: str, prompt: str) -> str | None:
    if model.temporal is not None:
        return ("the model has a temporal module (memory across frames, e.g. stm), which ONNX export does not "
                "cover; export a model without model.temporal")
    if part == "all" and prompt_needs_targets:
        return (f"prompt '{prompt}' needs clicks or boxes, so there is no automatic model to export end to end; "
                f"use --part encoder and --part decoder (SAM-style prompt inputs)")
    if part == "decoder" and not hasattr(model.prompt_encoder, "pe_layer"):
        return (f"--part decoder needs SAM's prompt encoder; this model's is "
                f"{type(model.prompt_encoder).__name__}")
    return None


def _metadata(recipe: Any, model: Any, classes: list[int], names: list[str], part: str, prompt: str,
              source: str) -> dict[str, str]:

    return {"samfx_version": samfx.__version__, "part": part, "classes": json.dumps(classes),
            "class_names": json.dumps(names), "image_size": str(int(model.image_size)),
            "pixel_scaling": PIXEL_SCALING, "recipe_sha256": recipe_hash(recipe), "prompt": prompt,
            "outputs": ("logits (N,K,S,S) float32 in classes' order; labels (N,S,S) int64 class ids"
                        if part == "all" else ""),
            "checkpoint": source, "opset": str(OPSET)}


@contextlib.contextmanager
def _sdpa_as_4d() -> Iterator[None]:
    """While exporting, ``F.scaled_dot_product_attention`` on 3-D (B,N,D) tensors (the APG's paper-form
    attention) runs as one head of 4-D ones: the same maths, but the ONNX translation of the op
    (onnxscript) takes only 4-D query, key and value."""
    original = F.scaled_dot_product_attention

    def sdpa(q: Tensor, k: Tensor, v: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if q.dim() == 3 and k.dim() == 3 and v.dim() == 3:
            mask = kwargs.get("attn_mask")
            if mask is not None and mask.dim() == 3:
                kwargs["attn_mask"] = mask.unsqueeze(1)
            return original(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), *args, **kwargs).squeeze(1)
        return original(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = sdpa  # type: ignore[assignment]
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, input_names: list[str],
            output_names: list[str]) -> None:
    """torch.onnx.export with the torch.export-based exporter (``dynamo=True``, torch's default since 2.9;
    the TorchScript-based one is deprecated): batch (and point count) axes dynamic, one file, no
    external data. torch.onnx may fall back to fixed shapes when a dynamic axis cannot be kept; that
    is an error here."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    points = torch.export.Dim("points", min=1, max=256)
    shapes = tuple({0: batch} if name in ("images", "image_embeddings") else {0: batch, 1: points}
                   for name in input_names)
    with warnings.catch_warnings(), torch.no_grad(), _sdpa_as_4d():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, dynamo=True, opset_version=OPSET, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=shapes, external_data=False,
                                    optimize=True, verbose=False, report=False)
    if program is None:
        raise SamfxError("export: torch.onnx.export returned no program")
    program.save(str(path), external_data=False)
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    fixed = [i.name for i in graph.input if i.type.tensor_type.shape.dim[0].HasField("dim_value")]
    if fixed:
        raise SamfxError(f"export: the graph's batch axis came out fixed (inputs {', '.join(fixed)}): a component "
                         f"turns the batch size into a Python int (int(tensor.shape[0])); keep it symbolic")


def _stamp(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def export_onnx(target: str | Path, out: str | Path, *, part: str = "all", prompt: str | None = None,
                registry: Any = None, quantize: str | None = None) -> ExportResult:
    """Export a run folder (best.pt, else last.pt) or checkpoint to `out` (.onnx); see the module doc.
    `quantize` "int8": the graph's MatMul weights quantised and gate-checked (samfx.deploy.quantize)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise SamfxError(f"export: {first_line(exc)}; install the export extra: pip install 'samfx[export]'") from None
    if part not in PARTS:
        raise SamfxError(f"--part: unknown part '{part}'; use one of {', '.join(PARTS)}")

    reg = registry or get_registry()
    out = Path(out).expanduser()
    if out.is_dir():
        raise SamfxError(f"--out {out}: is a folder; give the .onnx file to write")
    if quantize is not None and quantize != "int8":
        raise SamfxError(f"--quantize: unknown '{quantize}'; use int8 (or leave it out for fp32)")
    path = rundir.find_checkpoint(target)
    model, recipe, _ = ckpt.load_model(path, reg, "cpu")
    if quantize is not None:
        return export_quantized(model, recipe, out, part=part, prompt=prompt, source=path.name)
    return export_model(model, recipe, out, part=part, prompt=prompt, source=path.name)


def export_model(model: Any, recipe: Any, out: str | Path, *, part: str = "all", prompt: str | None = None,
                 source: str = "") -> ExportResult:
    """Export a built model (any weights) of `recipe` to `out`; ``source`` names its checkpoint in the
    metadata."""
    if part not in PARTS:
        raise SamfxError(f"--part: unknown part '{part}'; use one of {', '.join(PARTS)}")
    out = Path(out).expanduser()
    data = recipe.typed.data
    classes = list(data.classes)
    names = list(data.class_names)
    key = prompt or model.active_prompt
    if key not in model.prompt_generators:
        raise SamfxError(f"--prompt: '{key}' is not part of this model; it has: {', '.join(model.prompt_generators)}")
    needs = bool(getattr(model.prompt_generators[key], "needs_targets", False))
    why = _refusal(model, needs, part, key)
    if why is not None:
        raise SamfxError(f"export: {why}")
    model.float().eval()
    module, args, ins, outs = _graph_module(model, part, classes, key)
    meta = _metadata(recipe, model, classes, names, part, key, source)

    def write(tmp: Path) -> None:
        _export(module, args, tmp, ins, outs)
        _stamp(tmp, meta)

    _write_atomically(out, write)
    return ExportResult(out, part, OPSET, meta, "torch.onnx.export(dynamo=True)")


def _write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` the whole graph (export, then metadata) to a temp file next to `out`, then rename it
    over `out`: a failed or killed export leaves the previous `out` (or none), never a partial graph.
    An unwritable folder is one line naming `out`."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; the graph is an ordinary file
    except OSError as exc:
        raise SamfxError(f"--out {out}: cannot write there ({exc.strerror}); choose another --out") from None
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, out)
    except BaseException as exc:  # the exporter's errors are long; one line, traceback under SAMFX_DEBUG
        tmp.unlink(missing_ok=True)
        if isinstance(exc, SamfxError) or not isinstance(exc, Exception):
            raise
        if isinstance(exc, OSError) and exc.filename is not None:
            raise SamfxError(f"--out {out}: cannot write it ({exc.strerror}); choose another --out") from None
        raise SamfxError(f"export: torch.onnx.export failed ({first_line(exc)[:300]}); SAMFX_DEBUG=1 shows "
                         f"the traceback") from exc


def _graph_module(model: Any, part: str, classes: list[int],
                  prompt: str) -> tuple[nn.Module, tuple[Tensor, ...], list[str], list[str]]:
    """The module to export for `part`, example inputs, input and output names."""
    s = int(model.image_size)
    images = torch.rand(2, 3, s, s)
    if part == "all":
        return AutomaticModel(model, classes, prompt).eval(), (images,), ["images"], ["logits", "labels"]
    if part == "encoder":
        return EncoderPart(model).eval(), (images,), ["images"], ["image_embeddings"]
    with torch.no_grad():
        emb = EncoderPart(model)(images)
    coords = torch.rand(2, 3, 2) * s
    labels = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]])
    return (DecoderPart(model).eval(), (emb, coords, labels), ["image_embeddings", "point_coords", "point_labels"],
            ["masks", "iou_predictions"])


def export_quantized(model: Any, recipe: Any, out: str | Path, *, part: str = "all",
                     prompt: str | None = None, source: str = "") -> ExportResult:
    """Export `model` in fp32 to a temporary graph, quantise it into `out` and gate it against the fp32
    graph (``part`` all only: the gate compares label maps); a graph that misses the gate is deleted and
    refused in one line. Returns the :class:`ExportResult` of `out`."""
    from samfx.deploy.quantize import check_onnx_gate, quantize_onnx

    if part != "all":
        raise SamfxError(f"--quantize int8: only the end-to-end automatic model (--part all) is quantised, not "
                         f"--part {part}; leave --quantize out")
    out = Path(out).expanduser()
    with tempfile.TemporaryDirectory(prefix="samfx_quantize_") as folder:
        fp32 = export_model(model, recipe, Path(folder) / "fp32.onnx", part=part, prompt=prompt, source=source)
        quantize_onnx(fp32.path, out)
        try:
            check_onnx_gate(fp32.path, out, what=source or "the model")
        except SamfxError:
            out.unlink(missing_ok=True)
            raise
    return ExportResult(out, part, fp32.opset, {**fp32.metadata, "precision": "int8"}, fp32.exporter)
