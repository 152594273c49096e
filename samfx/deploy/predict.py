"""``samfx predict``: label maps and overlays for PNG / NIfTI / HDF5 / DICOM inputs, LV area curves and EF
for sequences.

Inputs: 2-D images (PNG/JPEG/BMP/TIFF, any mode -> grayscale), NIfTI (.nii / .nii.gz: 2-D, or
3-D = a sequence of frames on the last axis; axes (x, y[, t]) as CAMUS stores them), both read into
the pixels the importers would store (samfx.data.images: same scaling, NaN refused), samfx HDF5
stores (every sample and sequence), DICOM files and folders of them (read as ``samfx data dicom``
imports them: gray, cropped to the ultrasound region, sector kept), videos (.mp4/.avi/.mov/.mkv, read
as ``samfx data video`` reads them: gray, the container's frame rate, spacing unknown). Every input is
read and checked before the model loads or anything is written: the first bad file stops the command,
or with ``skip_bad`` is reported in one line (predictions.json ``skipped``) and left out. Outputs in OUT:
    <name>_label.png      uint8 label map (class ids) at the input's own resolution
    <name>_overlay.png    prediction over the image (ground truth contours when the store has them)
    <name>/frame_NNN_label.png, <name>/frame_NNN_overlay.png   per frame of a sequence
    <name>_lv_area.csv / .png   LV area per frame: px, and mm² when the spacing is known
    predictions.json      what was written, per input; per sequence also ED/ES and an EF estimate
                          (single-plane area-length on the predicted LV), null with a ``withheld``
                          reason when the sequence fails the plausibility rules; ``model``: the
                          model's provenance (samfx.deploy.caveats, docs/temporal.md); per input
                          ``warnings``: what makes its result doubtful (a scan sector under 5 % of
                          the image or none found, samfx.deploy.caveats.sector_warnings; a NIfTI
                          spacing dropped as unusable); per input ``confidence``: the model's
                          median predicted IoU and object-present share for the LV (null from the
                          onnx engine), a low one withholding EF
predictions.json is written last and atomically (so is the CSV); a file that cannot be written is one
line naming it, and the previous predictions.json is then left as it was.
<name> is the input's name, made unique among the inputs (samfx.deploy.caveats.unique_names). DICOMs
whose Modality is not US are refused unless ``any_modality``.

The prompt must be automatic (any generator with ``needs_targets`` false, e.g. ``apg``, ``none``):
simulated clicks and boxes need ground truth, which unlabeled inputs do not have. The exception is
``first_mask`` (``--first-mask``): frame 0's label map of one sequence, given to a temporal model
through the ``masks`` prompt (samfx.deploy.first_mask).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from samfx.contracts.errors import SamfxError
from samfx.contracts.plugins import get_registry
from samfx.data.files import write_json
from samfx.data.outfile import reason
from samfx.deploy.caveats import (
    clinical_readout,
    provenance,
    sector_warnings,
    unique_names,
    write_area_csv,
)
from samfx.deploy.first_mask import check_first_mask, first_frame_labels, first_mask_prompt, read_first_mask
from samfx.deploy.inputs import Input, read_inputs
from samfx.deploy.onnx_runtime import OnnxModel, is_onnx
from samfx.deploy.precision import autocast_of, for_inference
from samfx.engine.eval.clinical import confidence_summary
from samfx.engine.eval.evaluate import choose_prompt
from samfx.engine.eval.inference import (
    QueryConfidence,
    autocast,
    labels_from_logits,
    predict_classes,
)
from samfx.engine.eval.overlays import save_overlay
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import rundir
from samfx.engine.run.distributed import DistInfo, resolve_device


def _out_folder(out: str | Path, create: bool) -> Path:
    """`out` (created when `create`) unless it is a file or cannot be created: a SamfxError naming it."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise SamfxError(f"--out {out}: is a file; predict writes several files into a folder, give a new or "
                         f"existing folder")
    try:
        if create:
            out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SamfxError(f"--out {out}: cannot create the folder ({reason(exc)}); choose a writable "
                         f"folder") from None
    return out


class Predictor:
    """Holds the model; ``run(input)`` segments one Input and writes its files."""

    def __init__(self, checkpoint: str | Path, out_dir: str | Path, *, prompt: str | None = None,
                 device: str = "auto", registry=None, engine: str | None = None,
                 first_mask: np.ndarray | None = None, precision: str | None = None):
        _out_folder(out_dir, create=False)  # before the slow part
        self.confidence: dict[str, float | None] | None = None
        self.engine = check_engine(engine, checkpoint)
        self.onnx: OnnxModel | None = None
        self.first_mask = first_mask
        if self.engine == "onnx" and first_mask is not None:
            raise SamfxError("--first-mask: an exported ONNX model segments frames one by one, with no memory to "
                             "carry the mask; use the run folder (--engine torch)")
        if self.engine == "onnx":
            if prompt is not None:
                raise SamfxError("--prompt: an exported ONNX model has its prompt built in; leave --prompt out")
            if precision not in (None, "auto", "fp32"):
                raise SamfxError(f"--precision {precision}: an exported ONNX model's precision is set at export; "
                                 f"use `samfx export RUN --quantize int8` for an int8 graph, or --engine torch")
            self.onnx = OnnxModel.load(checkpoint)
            self.path, self.classes, self.names = self.onnx.path, self.onnx.classes, self.onnx.class_names
            self.prompt, self.provenance = self.onnx.prompt, provenance(None)
            self.precision = self.onnx.metadata.get("precision", "fp32")
            self.out = _out_folder(out_dir, create=True)
            self.lv = self.classes[self.names.index("LV")] if "LV" in self.names else self.classes[0]
            return
        if is_onnx(checkpoint):  # not reached: check_engine refuses it
            raise SamfxError(f"{checkpoint}: an ONNX file runs with --engine onnx")
        self.registry = registry or get_registry()
        self.path = rundir.find_checkpoint(checkpoint)
        self.device = resolve_device(device, DistInfo(), option="--device ")
        self.model, self.recipe, obj = ckpt.load_model(self.path, self.registry, self.device)
        self.provenance = provenance(obj)
        cfg = self.recipe.typed
        self.classes = list(cfg.data.classes)
        self.names = list(cfg.data.class_names)
        if first_mask is not None and precision is not None:
            raise SamfxError(f"--precision {precision} with --first-mask: the precision gate runs an automatic "
                             f"prompt, not the first-mask path; leave --precision out there")
        if first_mask is None:
            self.prompt = choose_prompt(self.model, self.recipe, prompt, self.registry, False, "--prompt")
        else:
            self.prompt = first_mask_prompt(self.model, self.recipe, prompt, self.registry)
        self.model, self.precision = for_inference(self.model, cfg.train.precision, precision, self.device,
                                                   self.classes, self.prompt, what=str(self.path))
        self.out = _out_folder(out_dir, create=True)
        self.lv = self.classes[self.names.index("LV")] if "LV" in self.names else self.classes[0]

    @torch.no_grad()
    def segment(self, frames: np.ndarray, sequence: bool) -> np.ndarray:
        """(T,H,W) uint8 -> label maps (T,H,W); sequences go through forward_clip frame by frame (the
        onnx engine: every frame on its own, as a model without temporal module does). Sets
        ``self.confidence``: the model's confidence in its LV over the frames
        (samfx.engine.eval.clinical.confidence_summary), None from the onnx engine (it reports none)."""
        self.confidence = None
        if self.onnx is not None:
            return segment_frames_onnx(self.onnx, frames)
        conf = QueryConfidence(self.classes.index(self.lv))
        pred = segment_frames(self.model, frames, self.classes, prompt=self.prompt, precision=self.precision,
                              sequence=sequence, first_mask=self.first_mask, confidence=conf)
        self.confidence = confidence_summary(conf.iou, conf.object_score)
        return pred

    def run(self, item: Input) -> dict[str, Any]:
        """Segment `item` and write its files; its predictions.json record. A file that cannot be written
        (disk full, no permission) is a SamfxError naming it."""
        if self.first_mask is not None:
            check_first_mask(self.first_mask, item, self.classes)
        self.confidence = None
        pred = self.segment(item.frames, item.sequence)
        rec: dict[str, Any] = {"input": item.source, "name": item.name, "frames": int(pred.shape[0]),
                               "spacing": list(item.spacing) if item.spacing else None,
                               "confidence": self.confidence,
                               "warnings": item.warnings + sector_warnings(item.frames,
                                                                           item.extra.get("sector_fraction"))}
        from PIL import Image

        if not item.sequence:
            label_path = self.out / f"{item.name}_label.png"
            with writing(label_path):
                Image.fromarray(pred[0]).save(label_path)
            gt = item.labels[0] if item.labels is not None else None
            with writing(ov := self.out / f"{item.name}_overlay.png"):
                save_overlay(ov, item.frames[0] / 255.0, pred[0], gt)
            rec.update(label=str(label_path), overlay=str(ov))
            return rec
        folder = self.out / item.name
        with writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
        for t in range(pred.shape[0]):
            with writing(path := folder / f"frame_{t:03d}_label.png"):
                Image.fromarray(pred[t]).save(path)
            gt = item.labels[t] if item.labels is not None and item.labels[t].any() else None
            with writing(path := folder / f"frame_{t:03d}_overlay.png"):
                save_overlay(path, item.frames[t] / 255.0, pred[t], gt)
        area_px = (pred == self.lv).reshape(pred.shape[0], -1).sum(1)
        unit = "mm2" if item.spacing else "px2"
        areas = area_px * (item.spacing[0] * item.spacing[1] if item.spacing else 1.0)
        csv_path = self.out / f"{item.name}_lv_area.csv"
        with writing(csv_path):
            write_area_csv(csv_path, area_px, item.spacing)
        clinical = {}
        if pred.shape[0] > 1:  # no EF from one frame
            clinical = clinical_readout(pred, self.lv, item.spacing, item.extra, item.frames, self.confidence)
            clinical["clinical_use"] = self.provenance["clinical_use"]
        ed, es = (-1 if clinical.get(k) is None else clinical[k] for k in ("ed", "es"))
        png_path = self._plot_area(item, areas, unit, ed, es)
        fps = item.extra.get("fps")
        rec.update(fps=fps if fps is not None and math.isfinite(fps) else None, folder=str(folder),
                   lv_area_csv=str(csv_path), lv_area_png=str(png_path), lv_area_max=float(areas.max()),
                   lv_area_min=float(areas.min()), area_unit=unit, **clinical)
        return rec

    def _plot_area(self, item: Input, areas: np.ndarray, unit: str, ed: int, es: int) -> Path:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(np.arange(len(areas)), areas, marker="o", ms=3)
        for key, f in (("ed", ed), ("es", es)):
            if 0 <= f < len(areas):
                ax.axvline(f, ls="--", color="gray")
                ax.text(f, ax.get_ylim()[1], key.upper(), ha="center", va="bottom", fontsize=8)
        ax.set_xlabel("frame")
        ax.set_ylabel(f"LV area ({unit.replace('2', '²')})")
        ax.set_title(item.name, fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.out / f"{item.name}_lv_area.png"
        try:
            with writing(path):
                fig.savefig(path, dpi=90)
        finally:
            plt.close(fig)
        return path


ENGINES = ("torch", "onnx")


def check_engine(engine: str | None, target: str | Path) -> str:
    """The engine for `target`: None picks onnx for a .onnx file, else torch; a mismatch is one line."""

    onnx_file = is_onnx(target)
    if engine is None:
        return "onnx" if onnx_file else "torch"
    if engine not in ENGINES:
        raise SamfxError(f"--engine: unknown engine '{engine}'; use torch or onnx")
    if engine == "onnx" and not onnx_file:
        raise SamfxError(f"--engine onnx runs an exported .onnx file, not {target}; export it first: "
                         f"samfx export {target} --format onnx --out model.onnx")
    if engine == "torch" and onnx_file:
        raise SamfxError(f"--engine torch needs the run folder or checkpoint, not the ONNX file {target}; "
                         f"use --engine onnx")
    return engine


def predict(checkpoint: str | Path, inputs: list[str], out_dir: str | Path, *, prompt: str | None = None,  # noqa: PLR0913  (the command's options)
            device: str = "auto", registry=None, engine: str | None = None,
            first_mask: str | Path | None = None, any_modality: bool = False,
            skip_bad: bool = False, precision: str | None = None) -> dict[str, Any]:
    """Segment every input; write files and predictions.json; return its content. `engine`: torch (a run
    folder or checkpoint) or onnx (an exported .onnx file, run with onnxruntime); None: from the path.
    `first_mask`: frame 0's label map of the one sequence input (semi-supervised, temporal models).
    `any_modality`: also DICOMs whose Modality is not US. `precision`: fp32 | bf16 | int8 | auto
    (samfx.deploy.precision; gate-checked; None: the recipe's train.precision as before). `skip_bad`: a
    bad input file is left out, its one-line error in the report's ``skipped`` (all bad: an error). Output
    names are unique per input (samfx.deploy.caveats.unique_names); the report's ``model`` is the model's
    provenance and ``precision`` the one it ran at."""
    if not inputs:
        raise SamfxError("predict: no inputs; pass image, NIfTI or .h5 files")
    check_engine(engine, checkpoint)
    mask = None
    if first_mask is not None:
        mask = read_first_mask(first_mask)
    skipped: list[str] = []
    items = [it for p in inputs for it in read_inputs(p, any_modality=any_modality,  # fail before any work
                                                      skipped=skipped if skip_bad else None)]
    if not items:
        raise SamfxError(f"{skipped[0]} (every input was skipped as bad)")
    for it, name in zip(items, unique_names([it.name for it in items], [it.source for it in items])):
        it.name = name
    if mask is not None and len(items) != 1:
        raise SamfxError(f"--first-mask: the mask is frame 0 of one sequence, but the inputs hold {len(items)} "
                         f"images/sequences; run one sequence per call")
    predictor = Predictor(checkpoint, out_dir, prompt=prompt, device=device, registry=registry, engine=engine,
                          first_mask=mask, precision=precision)
    results = [predictor.run(it) for it in items]
    report = {"checkpoint": str(predictor.path), "engine": predictor.engine, "prompt": predictor.prompt,
              "precision": predictor.precision,
              "first_mask": None if first_mask is None else str(first_mask), "out": str(predictor.out),
              "classes": dict(zip(predictor.names, predictor.classes)), "model": predictor.provenance,
              "results": results, "skipped": skipped}
    with writing(predictor.out / "predictions.json"):
        write_json(predictor.out / "predictions.json", report)  # last and atomic: it names only files written
    return report


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` (disk full, no permission, ...) into a SamfxError: one line
    naming `path` and the OS's reason. predictions.json, written last, is then left as it was."""
    try:
        yield
    except OSError as exc:
        raise SamfxError(f"{path}: cannot write ({reason(exc)}); predict stopped, predictions.json not "
                         f"updated; free space or choose a writable --out") from None


@torch.no_grad()
def segment_frames(model: Any, frames: np.ndarray, classes: list[int], *, prompt: str | None = None,
                   precision: str = "fp32", sequence: bool = False,
                   first_mask: np.ndarray | None = None, confidence: QueryConfidence | None = None) -> np.ndarray:
    """Gray frames (T,H,W) uint8 -> label maps (T,H,W) uint8 at their own resolution, on the model's
    device; ``sequence`` sends them through ``forward_clip`` as one clip (temporal models), with
    ``first_mask`` (H,W) class ids as frame 0's labels for a prompt that gives masks. `confidence`
    collects, per frame, the predicted IoU / object score of its query; the label maps do not change.
    `precision` int8: `model` is already quantised (samfx.deploy.precision) and runs without autocast."""
    device = next(model.parameters()).device
    precision = autocast_of(precision)
    hw = (int(frames.shape[1]), int(frames.shape[2]))
    x = model_input(frames, model.image_size, device)

    if not sequence:
        res = predict_classes(model, x, classes, prompt=prompt, precision=precision, size=hw)
        if confidence is not None:
            confidence.add(res.out, x.shape[0], len(classes))
        return res.labels.cpu().numpy().astype(np.uint8)
    labels: list[np.ndarray] = []

    def on_frame(t: int, out: Any) -> None:  # one frame's B*K = K queries -> its label map at (H,W)
        labels.append(labels_from_logits(out.logits, 1, classes, hw)[0][0].cpu().numpy().astype(np.uint8))
        if confidence is not None:
            confidence.add(out, 1, len(classes))

    given, labeled = None, None
    if first_mask is not None:
        given, labeled = first_frame_labels(first_mask, x.shape[0], model.image_size, device)
    with autocast(precision, device):
        model.forward_clip(x.unsqueeze(0), classes, given, labeled, prompt=prompt, on_frame=on_frame)
    return np.stack(labels)


def model_input(frames: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Gray frames (T,H,W) uint8 -> the model's input (T,3,S,S) float in [0,1]: /255, resized bilinearly
    (antialiased) to S x S, repeated to 3 channels."""
    x = torch.tensor(np.asarray(frames), dtype=torch.float32).div(255.0).unsqueeze(1).to(device)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.expand(-1, 3, -1, -1)


def segment_frames_onnx(runner: Any, frames: np.ndarray) -> np.ndarray:
    """:func:`segment_frames` through an :class:`samfx.deploy.onnx_runtime.OnnxModel`: the same input, and the
    graph's per-class logits resized to each frame's resolution before the label map."""
    s, hw = runner.image_size, (int(frames.shape[1]), int(frames.shape[2]))
    x = model_input(frames, s).contiguous().numpy()
    logits, _ = runner.run(x)
    out = torch.from_numpy(logits).reshape(-1, 1, s, s)
    return labels_from_logits(out, x.shape[0], runner.classes, hw)[0].numpy().astype(np.uint8)
