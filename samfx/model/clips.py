"""Clips through a model frame by frame: ``SegmentationModel.forward_clip`` (docs/temporal.md).

Queries are (clip, class) pairs, image-major, so a temporal module's state is batched over Q = B*K.
Per frame t: encode the B frames once; ``temporal.read`` gives a :class:`MemoryReadout`; prompted
frames (the prompt's schedule, samfx.config.schedule) get the prompt generator's prompts, which see
the frame and the previous frame's decoder output (``PromptContext.frame`` / ``.previous``), the others
SAM's no-prompt embedding plus the readout; the decoder runs; ``temporal.write`` stores the frame from
the decoder's output.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

from samfx.config.schedule import prompted_frames
from samfx.contracts.errors import SamfxError
from samfx.contracts.interfaces import DecoderOutput, FrameInfo, MemoryReadout, Prompts
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


def clip_schedules(model: SegmentationModel, name: str, t_len: int, b: int, key_frames: Tensor | None,
                   prompt_frames: Sequence[int] | None) -> list[list[bool]]:
    """Per clip, per frame: whether prompt `name` prompts it. ``prompt_frames`` (these frames of every
    clip) overrides the generator's schedule (the recipe's ``schedule`` key, else its default)."""
    if prompt_frames is not None:
        bad = [t for t in prompt_frames if not 0 <= t < t_len]
        if bad:
            raise SamfxError(f"forward_clip: prompt_frames {bad} are outside the clip's {t_len} frames")
        return [prompted_frames(sorted(set(prompt_frames)), t_len)] * b
    schedule = model.prompt_schedule(name)
    if schedule != "ed_es":
        return [prompted_frames(schedule, t_len)] * b
    if key_frames is None or tuple(key_frames.shape) != (b, t_len):
        got = "none were given" if key_frames is None else f"got {tuple(key_frames.shape)}"
        raise SamfxError(f"forward_clip: prompt '{name}' is scheduled on the ED and ES frames, but the clips' "
                         f"key_frames (B,T) = {(b, t_len)} bool are needed and {got}; pass key_frames= "
                         f"(datasets give them) or set the prompt's schedule to first or every")
    return [prompted_frames("ed_es", t_len, torch.nonzero(row).flatten().tolist()) for row in key_frames.cpu()]


def truth_frames(gen: Any, schedule: list[bool]) -> list[int]:
    """The frames on which generator `gen` reads ``ctx.targets``: those it prompts; for a generator that
    prompts from the previous output (``uses_previous``), only a prompted frame 0, which has none."""
    if not gen.needs_targets:
        return []
    if gen.uses_previous:
        return [0] if schedule and schedule[0] else []
    return [t for t, p in enumerate(schedule) if p]


def _check_targets(name: str, frames: list[int], labels: Tensor | None, labeled: Tensor) -> None:
    if not frames:
        return
    if labels is None or not bool(labeled[:, frames].all()):
        missing = "no labels were given" if labels is None else \
            f"clip(s) {torch.nonzero(~labeled[:, frames].all(1)).flatten().tolist()} lack labels there"
        raise SamfxError(f"forward_clip: prompt '{name}' needs the labels of every frame it prompts from the "
                         f"truth ({frames}), but {missing}; use an automatic prompt (e.g. apg) or label them")


def _frame_output(model: SegmentationModel, features: Any, cls: Tensor, tgt: Tensor | None,
                  readout: MemoryReadout, frame: FrameInfo, name: str, previous: DecoderOutput | None) -> SegOutput:
    if frame.prompted:
        out = model.decode(features, cls, tgt, readout=readout, prompt=name, frame=frame, previous=previous)
        if out.prompts.aux_losses and torch.is_grad_enabled():  # evaluation may ignore them
            raise SamfxError(f"forward_clip: prompt '{name}' returned auxiliary losses "
                             f"({', '.join(out.prompts.aux_losses)}), which clip training does not "
                             f"use yet; train it in an image stage (data.clip_length: 0)")
        return out
    features, k = model.features_for(features, cls.shape[0], readout)
    no_prompt = Prompts(*model.prompt_encoder.encode(cls.shape[0]))
    return model.decode_prompts(features, k, model.prompt_encoder.get_dense_pe(), no_prompt, readout, frame)


@dataclass
class ClipRequest:
    """What ``forward_clip`` segments: frames (B,T,3,S,S); classes: K class ids; labels (B,T,S,S) long label
    maps; labeled (B,T) bool; key_frames (B,T) bool, the ED and ES frames (the ``ed_es`` schedule)."""

    frames: Tensor
    classes: list[int]
    labels: Tensor | None = None
    labeled: Tensor | None = None
    key_frames: Tensor | None = None

    def pick(self, idx: list[int], labeled: Tensor) -> ClipRequest:
        """The clips `idx` of this request, with `labeled` (checked) in place of its own."""
        def sub(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[idx]
        return ClipRequest(self.frames[idx], self.classes, sub(self.labels), labeled[idx], sub(self.key_frames))


def run_clip(model: SegmentationModel, req: ClipRequest, prompt: str | None, on_frame: Any,
             prompt_frames: Sequence[int] | None) -> ClipOutput:
    """``forward_clip``: see :class:`ClipRequest`; ``prompt_frames``: the prompted frames of every clip
    (default: the prompt's schedule). ``on_frame(t, SegOutput)``, when given, receives each frame's
    B*K-query output instead of it being stacked (bounded memory). Clips whose schedules differ (``ed_es``
    on clips with their ED/ES at other frames) run as separate batches and are put back in order."""
    b, t_len = req.frames.shape[:2]
    labeled = check_clip(req.frames, len(req.classes), req.labels, req.labeled)
    name = prompt or model.active_prompt
    schedules = clip_schedules(model, name, t_len, b, req.key_frames, prompt_frames)
    groups: dict[tuple[bool, ...], list[int]] = {}
    for i, sched in enumerate(schedules):
        groups.setdefault(tuple(sched), []).append(i)
    if len(groups) == 1:
        return _run_group(model, ClipRequest(req.frames, req.classes, req.labels, labeled), name, on_frame,
                          schedules[0])
    if on_frame is not None:
        raise SamfxError("forward_clip: on_frame needs one prompt schedule for the whole batch, but these "
                         "clips' ED/ES frames differ; pass one clip at a time")
    parts = [(idx, _run_group(model, req.pick(idx, labeled), name, None, list(sched)))
             for sched, idx in groups.items()]
    return _stitch(parts, b)


def _run_group(model: SegmentationModel, req: ClipRequest, name: str, on_frame: Any,
               schedule: list[bool]) -> ClipOutput:
    """Clips sharing one schedule, frame by frame (``req.labeled`` already checked)."""
    frames, classes, labels = req.frames, req.classes, req.labels
    labeled = cast(Tensor, req.labeled)
    b, t_len, k = frames.shape[0], frames.shape[1], len(classes)
    gen = model.prompt_generators[name]
    target_frames = truth_frames(gen, schedule)
    _check_targets(name, target_frames, labels, labeled)
    cls = torch.tensor(classes, device=frames.device, dtype=torch.long).repeat(b)
    temporal = model.temporal
    state = temporal.init_state(b * k, frames.device) if temporal is not None else None
    logits, ious, targets, scores = [], [], [], []
    previous: DecoderOutput | None = None
    for t in range(t_len):
        frame = FrameInfo(t, t_len, schedule[t], k)
        features = model.encode(frames[:, t])
        tgt = class_targets(labels[:, t], cls) if labels is not None else None
        if tgt is not None and on_frame is None:
            targets.append(tgt.view(b, k, *tgt.shape[2:]))
        # a state of None is a module's own business (e.g. nothing seen yet), not 'no memory'
        readout = temporal.read(state, features, frame) if temporal is not None else MemoryReadout()
        out = _frame_output(model, features, cls, tgt if t in target_frames else None, readout, frame, name,
                            previous)
        previous = out.decoded
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


def _stitch(parts: list[tuple[list[int], ClipOutput]], b: int) -> ClipOutput:
    """One ClipOutput of `b` clips from those of groups of them (clip indices, output)."""
    order = torch.tensor([i for idx, _ in parts for i in idx])
    back = torch.argsort(order)

    def cat(get: Any) -> Tensor | None:
        items = [get(out) for _, out in parts]
        return None if any(x is None for x in items) else torch.cat(items)[back.to(items[0].device)]

    first = parts[0][1]
    return ClipOutput(cat(lambda o: o.logits), cat(lambda o: o.iou), cat(lambda o: o.targets),
                      cast(Tensor, cat(lambda o: o.labeled)), first.classes, cat(lambda o: o.object_score))
