"""Clips through a model frame by frame: ``SegmentationModel.forward_clip`` (docs/temporal.md).

Queries are (clip, class) pairs, image-major, so a temporal module's state is batched over Q = B*K.
Per frame t: encode the B frames once; ``temporal.read`` gives a :class:`MemoryReadout`; prompted
frames (the schedule) get the prompt generator's prompts, the others SAM's no-prompt embedding plus
the readout; the decoder runs; ``temporal.write`` stores the frame from the decoder's output.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from samfx.contracts.errors import SamfxError
from samfx.contracts.interfaces import FrameInfo, MemoryReadout, Prompts
from samfx.model.outputs import ClipOutput, SegOutput, class_targets

if TYPE_CHECKING:
    from samfx.model.segmentation import SegmentationModel


def check_clip(frames: Tensor, k: int, labels: Tensor | None, labeled: Tensor | None) -> Tensor:
    """Validate shapes; the (B,T) bool mask of labeled frames (all, when labels are given and it is None)."""
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise SamfxError(f"forward_clip: frames must be (B,T,3,S,S), got {tuple(frames.shape)}; "
                         f"stack a clip's frames on dim 1")
    b, t_len = frames.shape[:2]
    if k == 0:
        raise SamfxError("forward_clip: classes is empty; pass the class ids to segment (e.g. data.classes)")
    if labels is not None and tuple(labels.shape) != (b, t_len, *frames.shape[3:]):
        raise SamfxError(f"forward_clip: labels must be (B,T,S,S) = {(b, t_len, *frames.shape[3:])}, "
                         f"got {tuple(labels.shape)}")
    if labeled is None:
        labeled = torch.full((b, t_len), labels is not None, dtype=torch.bool, device=frames.device)
    elif tuple(labeled.shape) != (b, t_len):
        raise SamfxError(f"forward_clip: labeled must be (B,T) = {(b, t_len)}, got {tuple(labeled.shape)}")
    return labeled.to(device=frames.device, dtype=torch.bool)


def prompt_schedule(t_len: int, needs_targets: bool, prompt_frames: Sequence[int] | None) -> list[bool]:
    """Which frames the prompt generator prompts: the given frames; by default frame 0 for a simulated
    user (clicks, boxes need labels), every frame for an automatic generator (APG, none)."""
    if prompt_frames is None:
        return [t == 0 or not needs_targets for t in range(t_len)]
    bad = [t for t in prompt_frames if not 0 <= t < t_len]
    if bad:
        raise SamfxError(f"forward_clip: prompt_frames {bad} are outside the clip's {t_len} frames")
    return [t in set(prompt_frames) for t in range(t_len)]


def _check_targets(name: str, needs_targets: bool, schedule: list[bool], labels: Tensor | None,
                   labeled: Tensor) -> None:
    if not needs_targets:
        return
    frames = [t for t, p in enumerate(schedule) if p]
    if labels is None or not bool(labeled[:, frames].all()):
        missing = "no labels were given" if labels is None else \
            f"clip(s) {torch.nonzero(~labeled[:, frames].all(1)).flatten().tolist()} lack labels there"
        raise SamfxError(f"forward_clip: prompt '{name}' needs the labels of every prompted frame "
                         f"({frames}), but {missing}; use an automatic prompt (e.g. apg) or label them")


def _frame_output(model: SegmentationModel, features: Any, cls: Tensor, tgt: Tensor | None,
                  readout: MemoryReadout, frame: FrameInfo, name: str) -> SegOutput:
    gen = model.prompt_generators[name]
    if frame.prompted:
        out = model.decode(features, cls, tgt if gen.needs_targets else None, readout=readout, prompt=name)
        if out.prompts.aux_losses and torch.is_grad_enabled():  # evaluation may ignore them
            raise SamfxError(f"forward_clip: prompt '{name}' returned auxiliary losses "
                             f"({', '.join(out.prompts.aux_losses)}), which clip training does not "
                             f"use yet; train it in an image stage (data.clip_length: 0)")
        return out
    features, k = model.features_for(features, cls.shape[0], readout)
    no_prompt = Prompts(*model.prompt_encoder.encode(cls.shape[0]))
    return model.decode_prompts(features, k, model.prompt_encoder.get_dense_pe(), no_prompt, readout)


def run_clip(model: SegmentationModel, frames: Tensor, classes: list[int], labels: Tensor | None,
             labeled: Tensor | None, prompt: str | None, on_frame: Any,
             prompt_frames: Sequence[int] | None) -> ClipOutput:
    """frames (B,T,3,S,S); classes: K class ids; labels (B,T,S,S) long label maps; labeled (B,T) bool;
    ``prompt_frames``: the prompted frames (default: :func:`prompt_schedule`). ``on_frame(t, SegOutput)``,
    when given, receives each frame's B*K-query output instead of it being stacked (bounded memory)."""
    b, t_len, k = frames.shape[0], frames.shape[1], len(classes)
    labeled = check_clip(frames, k, labels, labeled)
    name = prompt or model.active_prompt
    needs_targets = bool(model.prompt_generators[name].needs_targets)
    schedule = prompt_schedule(t_len, needs_targets, prompt_frames)
    _check_targets(name, needs_targets, schedule, labels, labeled)
    cls = torch.tensor(classes, device=frames.device, dtype=torch.long).repeat(b)
    temporal = model.temporal
    state = temporal.init_state(b * k, frames.device) if temporal is not None else None
    logits, ious, targets, scores = [], [], [], []
    for t in range(t_len):
        frame = FrameInfo(t, t_len, schedule[t], k)
        features = model.encode(frames[:, t])
        tgt = class_targets(labels[:, t], cls) if labels is not None else None
        if tgt is not None and on_frame is None:
            targets.append(tgt.view(b, k, *tgt.shape[2:]))
        # a state of None is a module's own business (e.g. nothing seen yet), not 'no memory'
        readout = temporal.read(state, features, frame) if temporal is not None else MemoryReadout()
        out = _frame_output(model, features, cls, tgt, readout, frame, name)
        if temporal is not None:
            state = temporal.write(state, features, out.decoded, frame)
        if on_frame is not None:
            on_frame(t, out)
        else:
            logits.append(out.logits.view(b, k, *out.logits.shape[2:]))
            ious.append(out.iou.reshape(b, k))
            if out.decoded.object_score is not None:
                scores.append(out.decoded.object_score.reshape(b, k))
    return ClipOutput(torch.stack(logits, 1) if logits else None, torch.stack(ious, 1) if ious else None,
                      torch.stack(targets, 1) if targets else None, labeled, list(classes),
                      torch.stack(scores, 1) if scores else None)
