"""The model calls behind an annotation session, on one frame's cached features: clicks / a box through
the prompt encoder and decoder only, the run's automatic prompt, and propagation through a loop (the
run's temporal module, else the previous frame's mask as SAM's dense mask prompt). One lock serialises
the model across the server's sessions and threads."""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samfx.contracts.interfaces import FrameInfo, ImageFeatures, Prompts, given_mask_logits
from samfx.deploy.annotate.access import AnnotateError
from samfx.deploy.predict import model_input
from samfx.engine.eval.inference import autocast, labels_from_logits

SUPPRESSED = -1.0e4     # logit of a class absent from the frame a propagation starts from


class RunLike(Protocol):
    """What annotate needs of :class:`samfx.api.Run` (``samfx.api.load_run``)."""

    model: Any
    recipe: Any
    classes: list[int]
    class_names: list[str]
    prompt: str
    precision: str


@dataclass
class Clicks:
    """One class's prompts on one frame, in the frame's own pixel coordinates (x = column, y = row)."""

    points: list[tuple[float, float, int]]     # (x, y, 1 positive / 0 negative)
    box: tuple[float, float, float, float] | None = None

    def empty(self) -> bool:
        return not self.points and self.box is None


class ModelOps:
    """The run's model in eval mode, with ``lock`` held around every call (thread-safe)."""

    def __init__(self, run: RunLike):
        self.run = run
        self.model = run.model.eval()
        self.classes = list(run.classes)
        self.size = int(self.model.image_size)
        self.device = next(self.model.parameters()).device
        self.lock = threading.RLock()
        h, w = self.model.context.embed_size
        self.low_res = (4 * int(h), 4 * int(w))
        self._dense_pe: Tensor | None = None

    def dense_pe(self) -> Tensor:
        """The prompt encoder's dense positional encoding, computed once (it depends on the weights only)."""
        if self._dense_pe is None:
            with torch.inference_mode():
                self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        return self._dense_pe

    @property
    def has_temporal(self) -> bool:
        return self.model.temporal is not None

    # -- features ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, frame: np.ndarray) -> ImageFeatures:
        """One gray frame (H,W) uint8 -> its ImageFeatures (batch 1), as predict's input."""
        x = model_input(frame[None], self.size, self.device)
        with self.lock, autocast(self.run.precision, self.device):
            return self.model.encode(x)

    def _scale(self, hw: tuple[int, int]) -> tuple[float, float]:
        return self.size / hw[1], self.size / hw[0]

    def _labels(self, logits: Tensor, hw: tuple[int, int]) -> np.ndarray:
        labels, _ = labels_from_logits(logits.float(), 1, self.classes, hw)
        return labels[0].cpu().numpy().astype(np.uint8)

    # -- clicks and boxes ----------------------------------------------------------------------------
    @torch.inference_mode()
    def prompt_mask(self, features: ImageFeatures, clicks: Clicks, hw: tuple[int, int]) -> np.ndarray:
        """(H,W) bool: the decoder's mask for one class's clicks / box (prompt encoder + decoder only)."""
        if clicks.empty():
            return np.zeros(hw, bool)
        sx, sy = self._scale(hw)
        points = None
        if clicks.points:
            xy = torch.tensor([[(x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5] for x, y, _ in clicks.points],
                              dtype=torch.float32, device=self.device)[None]
            lab = torch.tensor([[int(p) for _, _, p in clicks.points]], dtype=torch.long, device=self.device)
            points = (xy, lab)
        box = None
        if clicks.box is not None:
            x0, y0, x1, y1 = clicks.box
            box = torch.tensor([[x0 * sx, y0 * sy, x1 * sx, y1 * sy]], dtype=torch.float32, device=self.device)
        pe = self.model.prompt_encoder
        with self.lock, autocast(self.run.precision, self.device):
            try:
                sparse, dense = pe.encode(1, points=points, boxes=box)
            except (ValueError, NotImplementedError) as exc:
                raise AnnotateError(f"this run's prompt encoder ({type(pe).__name__}) takes no clicks or boxes "
                                    f"({exc}); use automatic and the brush") from None
            out = self.model.decode_prompts(features, 1, self.dense_pe(), Prompts(sparse, dense), None)
        logits = F.interpolate(out.logits.float(), size=hw, mode="bilinear", align_corners=False)
        return (logits[0, 0] > 0).cpu().numpy()

    # -- automatic -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def automatic(self, features: ImageFeatures, hw: tuple[int, int]) -> np.ndarray:
        """(H,W) label map from the run's automatic prompt generator (every class, one decoder call)."""
        cls = torch.tensor(self.classes, dtype=torch.long, device=self.device)
        with self.lock, autocast(self.run.precision, self.device):
            out = self.model.decode(features, cls, prompt=self.run.prompt)
        return self._labels(out.logits, hw)

    # -- propagation ---------------------------------------------------------------------------------
    def _start_masks(self, labels: np.ndarray) -> tuple[Tensor, Tensor]:
        """Frame t's label map -> per-class masks (K,1,S,S) (area-resized) and which classes it has (K,)."""
        lab = torch.from_numpy(np.asarray(labels)).to(self.device)
        masks = torch.stack([(lab == c).float() for c in self.classes])[:, None]
        present = masks.flatten(1).amax(1) > 0
        return F.interpolate(masks, size=(self.size, self.size), mode="area"), present

    @torch.inference_mode()
    def propagate(self, order: Sequence[int], start_labels: np.ndarray, features: Callable[[int], ImageFeatures],
                  hw: tuple[int, int], on_frame: Callable[[int, np.ndarray], None]) -> str:
        """Carry ``start_labels`` (the label map of frame ``order[0]``) through frames ``order[1:]``, calling
        ``on_frame(t, labels)`` for each; classes absent from the start frame stay absent. Returns the
        method used: ``"temporal"`` or ``"mask_prompt"``."""
        masks, present = self._start_masks(start_labels)
        with self.lock, autocast(self.run.precision, self.device):
            if self.has_temporal:
                self._through_memory(order, masks, present, features, hw, on_frame)
                return "temporal"
            self._through_mask_prompts(order, masks, present, features, hw, on_frame)
            return "mask_prompt"

    def _decode_unprompted(self, feats: ImageFeatures, readout: Any, frame: FrameInfo | None) -> Any:
        """The decoder with SAM's no-prompt embedding (and the memory's readout), as clips' unprompted frames."""
        k = len(self.classes)
        pe = self.model.prompt_encoder
        f, per_image = self.model.features_for(feats, k, readout)
        no_prompt = Prompts(*pe.encode(k))
        return self.model.decode_prompts(f, per_image, self.dense_pe(), no_prompt, readout, frame), no_prompt

    def _emit(self, logits: Tensor, present: Tensor, hw: tuple[int, int]) -> np.ndarray:
        logits = logits.float().clone()
        logits[~present] = SUPPRESSED
        return self._labels(logits, hw)

    def _through_memory(self, order: Sequence[int], masks: Tensor, present: Tensor,
                        features: Callable[[int], ImageFeatures], hw: tuple[int, int],
                        on_frame: Callable[[int, np.ndarray], None]) -> None:
        """samfx.model.clips' per-frame loop: read, decode with no prompt, write. The start frame is decoded
        as the ``masks`` prompt generator prompts a first frame (its masks as the dense mask prompt, when the
        prompt encoder takes one) and its output is the user's masks (a given mask), written as a prompted
        frame."""
        temporal, k, n = self.model.temporal, len(self.classes), len(order)
        state = temporal.init_state(k, self.device)
        for i, t in enumerate(order):
            feats = features(t)
            frame = FrameInfo(i, n, i == 0, k)
            readout = temporal.read(state, feats, frame)
            if i == 0:
                prompts = self._mask_prompts(masks)
                f, per_image = self.model.features_for(feats, k, readout)
                out = self.model.decode_prompts(f, per_image, self.dense_pe(), prompts,
                                                readout, frame)
                state = temporal.write(state, feats, out.decoded, frame)   # the given masks (Prompts.mask)
                continue
            out, _ = self._decode_unprompted(feats, readout, frame)
            state = temporal.write(state, feats, out.decoded, frame)
            on_frame(t, self._emit(out.logits, present, hw))

    def _mask_prompts(self, masks: Tensor) -> Prompts:
        """Prompts carrying `masks` (K,1,S,S): SAM's dense mask prompt (+-10 logits) and the given mask; the
        no-prompt embedding when the prompt encoder takes no mask."""
        pe, k = self.model.prompt_encoder, len(self.classes)
        try:
            sparse, dense = pe.encode(k, masks=given_mask_logits(masks, self.low_res))
        except (ValueError, NotImplementedError):
            sparse, dense = pe.encode(k)
        return Prompts(sparse, dense, mask=masks)

    def _through_mask_prompts(self, order: Sequence[int], masks: Tensor, present: Tensor,
                              features: Callable[[int], ImageFeatures], hw: tuple[int, int],
                              on_frame: Callable[[int, np.ndarray], None]) -> None:
        """Each next frame prompted with the previous frame's low-res logits as the dense mask prompt (the
        start frame's: its masks as +-10 logits), as SAM's interactive loop feeds its last mask back."""
        k, pe = len(self.classes), self.model.prompt_encoder
        previous = given_mask_logits(masks, self.low_res)
        for t in order[1:]:
            try:
                sparse, dense = pe.encode(k, masks=previous)
            except (ValueError, NotImplementedError) as exc:
                raise AnnotateError(f"this run has no temporal module and its prompt encoder "
                                    f"({type(pe).__name__}) takes no mask prompt ({exc}); propagation needs "
                                    f"one of them") from None
            out = self.model.decode_prompts(features(t), k, self.dense_pe(), Prompts(sparse, dense), None)
            previous = out.decoded.low_res[:, :1]
            on_frame(t, self._emit(out.logits, present, hw))
