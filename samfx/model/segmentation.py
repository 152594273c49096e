"""The composed model: encoder (+ adapters on its sites) -> prompt generator -> mask decoder,
optionally wrapped per frame by a temporal module. Built from a recipe by ``samfx.model.build``.

Parameter names are stable and checkpoint-compatible with SAM: ``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``; samfx adds ``prompt_generators.<name>.*``,
``adapters.<name>-<site>.*`` and ``temporal.*``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samfx.config.schedule import Schedule
from samfx.contracts.errors import SamfxError
from samfx.contracts.interfaces import (
    GIVEN_MASK_LOGIT,
    Adapter,
    BuildContext,
    DecoderInput,
    DecoderOutput,
    FrameInfo,
    ImageEncoder,
    ImageFeatures,
    MaskDecoderBase,
    MemoryReadout,
    PromptContext,
    PromptEncoderBase,
    PromptGenerator,
    Prompts,
    TemporalModule,
    given_mask_logits,
)
from samfx.model.clips import ClipRequest, run_clip
from samfx.model.outputs import ClipOutput, SegOutput, class_targets
from samfx.model.roles import component_modules


def given_mask_output(mask: Tensor, decoded: DecoderOutput, prompts: Prompts) -> SegOutput:
    """A given mask (Q,1,S,S) as the queries' output (SAM2's mask-as-output): +-10 logits at full size,
    its area-pooled logits at the decoder's low resolution (what memories store), IoU 1, and an object
    score of +-10 by whether the mask is empty; the decoder's tokens are kept (SAM2's object pointer)."""
    mask = mask.to(decoded.low_res.dtype)
    q, m = decoded.low_res.shape[:2]
    if tuple(mask.shape[:2]) != (q, 1):
        raise SamfxError(f"Prompts.mask must be (Q,1,S,S) for Q={q} queries, got {tuple(mask.shape)}")
    score = None
    if decoded.object_score is not None:
        score = (mask.flatten(1).amax(1, keepdim=True) * 2 - 1) * GIVEN_MASK_LOGIT
    low = given_mask_logits(mask, (int(decoded.low_res.shape[-2]), int(decoded.low_res.shape[-1])))
    given = replace(decoded, low_res=low.expand(q, m, -1, -1),
                    iou=torch.ones_like(decoded.iou), object_score=score)
    return SegOutput((2 * mask - 1) * GIVEN_MASK_LOGIT, given, prompts)


def _check_per_query(features: ImageFeatures, queries: int, who: str) -> None:
    """Replacement features are per query (batch Q), not per image: a one-line error otherwise."""
    if features.embedding.shape[0] != queries:
        raise SamfxError(f"{who}.features has batch {features.embedding.shape[0]} but there are {queries} "
                         f"queries; replacement features are per query (use ImageFeatures.per_query(K))")


def _run_adapter(adapter: Adapter, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
    return adapter(inputs[0] if inputs else None, output)


class SegmentationModel(nn.Module):
    """Components by role; ``context`` is the :class:`BuildContext` they were built with."""

    def __init__(self, image_encoder: ImageEncoder, prompt_encoder: PromptEncoderBase,
                 mask_decoder: MaskDecoderBase, prompt_generators: dict[str, PromptGenerator],
                 active_prompt: str, adapters: dict[str, tuple[Adapter, nn.Module]] | None = None,
                 temporal: TemporalModule[Any] | None = None, context: BuildContext | None = None):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.prompt_generators = nn.ModuleDict(prompt_generators)
        self.adapters = nn.ModuleDict({k: a for k, (a, _) in (adapters or {}).items()})
        for adapter, site_module in (adapters or {}).values():
            site_module.register_forward_hook(partial(_run_adapter, adapter))
        self.temporal = temporal
        self.active_prompt = active_prompt
        self.schedules: dict[str, Schedule] = {}  # prompt key -> the recipe's schedule (build_model)
        self.image_size = image_encoder.image_size
        if context is None:                  # assembled by hand (tests): the encoder's geometry
            context = BuildContext()
            context.take_geometry(image_encoder)
        self.context = context

    # -- components ---------------------------------------------------------------------------
    def component_modules(self) -> dict[str, nn.Module]:
        """Top-level components by the names used in stages' ``trainable`` lists and reports."""
        return component_modules(self)

    def use_prompt(self, name: str) -> None:
        if name not in self.prompt_generators:
            known = ", ".join(self.prompt_generators)
            raise KeyError(f"prompt generator '{name}' is not part of this model; it has: {known}")
        self.active_prompt = name

    @property
    def prompt_generator(self) -> PromptGenerator:
        return cast(PromptGenerator, self.prompt_generators[self.active_prompt])

    # -- forward ------------------------------------------------------------------------------
    def encode(self, images: Tensor) -> ImageFeatures:
        return cast(ImageFeatures, self.image_encoder(images))

    def decode(self, features: ImageFeatures, class_ids: Tensor, targets: Tensor | None = None,
               readout: MemoryReadout | None = None, prompt: str | None = None, frame: FrameInfo | None = None,
               previous: DecoderOutput | None = None) -> SegOutput:
        """Prompts, then the decoder, for Q = len(class_ids) queries of ``features``' images
        (image-major, Q / B per image); a memory readout's features and dense prompt join in.
        ``frame`` / ``previous``: the clip frame and the previous frame's output (PromptContext). The
        generator gets `targets` when it ``needs_targets``, or in training mode (auxiliary losses), never
        else: an automatic prompt never sees labels in evaluation."""
        gen = self.prompt_generators[prompt or self.active_prompt]
        if not (gen.needs_targets or self.training):   # automatic prompts see labels in training only (aux losses)
            targets = None
        features, k = self.features_for(features, class_ids.shape[0], readout)
        image_pe = self.prompt_encoder.get_dense_pe()
        ctx = PromptContext(features, image_pe, self.prompt_encoder, self.mask_decoder, self.image_size,
                            class_ids, targets, k, frame, previous)
        return self.decode_prompts(features, k, image_pe, gen(ctx), readout, frame)

    def features_for(self, features: ImageFeatures, queries: int,
                     readout: MemoryReadout | None) -> tuple[ImageFeatures, int]:
        """(features to decode, queries per image): the encoder's, shared by queries / B queries each, or
        the memory readout's per-query features (checked), 1 each."""
        if readout is not None and readout.features is not None:
            _check_per_query(readout.features, queries, "the temporal module's MemoryReadout")
            return readout.features, 1
        return features, queries // features.batch_size

    def decode_prompts(self, features: ImageFeatures, k: int, image_pe: Tensor, prompts: Prompts,
                       readout: MemoryReadout | None, frame: FrameInfo | None = None) -> SegOutput:
        """The decoder on given prompts: `k` queries per image of ``features`` (1 when the prompts or the
        readout bring per-query features), plus the readout's dense prompt; full-size logits. ``frame``:
        the clip frame (None: an image), passed on to the decoder with the prompts' point count."""
        if prompts.features is not None:
            _check_per_query(prompts.features, prompts.sparse.shape[0], "the prompt generator's Prompts")
            features, k = prompts.features, 1
        extra = readout.dense if readout is not None else None
        dense = prompts.dense if extra is None else prompts.dense + extra
        points = (prompts.points.shape[1] if prompts.points is not None else 0) + \
            (2 if prompts.boxes is not None else 0)
        # a given mask is decoded as SAM2 decodes one (its _use_mask_as_output): as on an image, one mask
        decoded = self.mask_decoder(DecoderInput(features, image_pe, prompts.sparse, dense, k,
                                                 frame=frame if prompts.mask is None else None, num_points=points))
        if prompts.mask is not None:
            return given_mask_output(prompts.mask, decoded, prompts)
        logits = F.interpolate(decoded.low_res, size=(self.image_size, self.image_size), mode="bilinear",
                               align_corners=False)
        return SegOutput(logits, decoded, prompts)

    def image_prompt(self, prompt: str | None) -> str:
        """The generator key for an image (not a sequence) forward; one that gives the mask is refused."""
        name = prompt or self.active_prompt
        if self.prompt_generators[name].gives_mask:
            raise SamfxError(f"prompt '{name}' gives the mask itself, so it prompts the first frame of a "
                             f"sequence (data.clip_length > 0, semi-supervised), not an image; use clicks, "
                             f"boxes or an automatic prompt for images (samfx eval: --prompt clicks)")
        return name

    def forward(self, images: Tensor, class_ids: Tensor | None = None, targets: Tensor | None = None,
                prompt: str | None = None) -> SegOutput:
        """One query per image: images (B,3,S,S), class_ids (B,) (default all 1), targets (B,1,S,S)."""
        if class_ids is None:
            class_ids = torch.ones(images.shape[0], dtype=torch.long, device=images.device)
        return self.decode(self.encode(images), class_ids, targets, prompt=self.image_prompt(prompt))

    def forward_classes(self, images: Tensor, classes: list[int], label_map: Tensor | None = None,
                        prompt: str | None = None) -> tuple[Tensor, SegOutput]:
        """All classes of each image with one encoder pass, the features shared by the K queries.

        Returns (targets (B*K,1,S,S) or empty, output over B*K queries ordered image-major).
        label_map (B,S,S) long gives per-class binary targets (needed by simulated prompts).
        """
        prompt = self.image_prompt(prompt)
        features = self.encode(images)
        cls = torch.tensor(classes, device=images.device, dtype=torch.long).repeat(images.shape[0])
        targets = class_targets(label_map, cls) if label_map is not None else None
        out = self.decode(features, cls, targets, prompt=prompt)
        return (targets if targets is not None else torch.empty(0)), out

    def forward_clip(self, frames: Tensor, classes: list[int], labels: Tensor | None = None,
                     labeled: Tensor | None = None, prompt: str | None = None,
                     on_frame: Any = None, prompt_frames: Sequence[int] | None = None,
                     key_frames: Tensor | None = None) -> ClipOutput:
        """Segment clips frame by frame through the temporal module (docs/temporal.md): frames
        (B,T,3,S,S), labels (B,T,S,S), labeled and key_frames (the ED/ES frames) (B,T) bool; see
        :func:`samfx.model.clips.run_clip`."""
        return run_clip(self, ClipRequest(frames, classes, labels, labeled, key_frames), prompt, on_frame,
                        prompt_frames)

    def prompt_schedule(self, name: str | None = None) -> Schedule:
        """Which frames of a clip prompt `name` (default: the active one) prompts: the recipe's
        ``schedule`` key, else the generator's ``default_schedule`` (samfx.config.schedule)."""
        key = name or self.active_prompt
        if key in self.schedules:
            return self.schedules[key]
        gen = cast(PromptGenerator, self.prompt_generators[key])
        return gen.default_schedule or ("first" if gen.needs_targets else "every")
