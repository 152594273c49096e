"""An exported end-to-end model (``samfx export --format onnx``) run through onnxruntime, for
``samfx predict MODEL.onnx`` (docs/deploying.md). The metadata written by the export give the classes,
class names and image size; the label-map rule is :func:`samfx.engine.eval.inference.label_map`'s."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import SamfxError, first_line


def is_onnx(target: str | Path) -> bool:
    return Path(target).suffix.lower() == ".onnx"


@dataclass
class OnnxModel:
    """An onnxruntime session over an exported ``--part all`` graph and its metadata."""

    path: Path
    session: Any
    classes: list[int]
    class_names: list[str]
    image_size: int
    prompt: str
    metadata: dict[str, str]

    @classmethod
    def load(cls, target: str | Path, threads: int | None = None) -> OnnxModel:
        """Open `target` on the CPU (`threads`: onnxruntime's intra-op threads; None: its default)."""
        path = Path(target).expanduser()
        if not path.is_file():
            raise SamfxError(f"{path}: no such ONNX file")
        try:
            import onnxruntime as ort
        except ImportError:
            raise SamfxError("onnx engine: onnxruntime is not installed; pip install 'samfx[export]'") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise SamfxError(f"{path}: onnxruntime cannot load it ({first_line(exc)[:200]}); is it a complete "
                             f"ONNX file?") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        missing = [k for k in ("classes", "class_names", "image_size", "part") if k not in meta]
        if missing:
            raise SamfxError(f"{path}: no samfx metadata ({', '.join(missing)} missing); export it with "
                             f"`samfx export RUN --format onnx`")
        if meta["part"] != "all":
            raise SamfxError(f"{path}: holds the {meta['part']} part of a prompted model; predict needs the "
                             f"end-to-end automatic model (`samfx export RUN` without --part)")
        return cls(path, session, [int(c) for c in json.loads(meta["classes"])],
                   [str(n) for n in json.loads(meta["class_names"])], int(meta["image_size"]),
                   meta.get("prompt", ""), meta)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (N,3,S,S) float32 in [0,1] -> (logits (N,K,S,S) float32, labels (N,S,S) int64)."""
        logits, labels = self.session.run(["logits", "labels"], {"images": np.ascontiguousarray(images,
                                                                                              np.float32)})
        return logits, labels
