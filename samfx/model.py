"""The composed model: encoder (+ adapters on its sites) -> prompt generator -> mask decoder,
optionally wrapped per frame by a temporal module. Built from a recipe by ``samfx.build``.

Parameter names are stable and checkpoint-compatible with SAM: ``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``; samfx adds ``prompt_generators.<name>.*``,
``adapters.<name>-<site>.*`` and ``temporal.*``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samfx.interfaces import (
    Adapter,
    ImageEncoder,
    MaskDecoderBase,
    PromptContext,
    PromptEncoderBase,
    PromptGenerator,
    Prompts,
    TemporalModule,
)


@dataclass
class SegOutput:
    logits: Tensor          # (B,1,S,S) full-resolution mask logits
    low_res: Tensor         # (B,1,h',w') decoder logits
    iou: Tensor             # (B,1) predicted IoU
    prompts: Prompts


@dataclass
class ClipOutput:
    """``forward_clip`` result. logits (B,T,K,S,S) and iou (B,T,K) are None when ``on_frame`` consumed
    each frame; targets (B,T,K,S,S) binary per-class targets when labels were given."""
    logits: Tensor | None
    iou: Tensor | None
    targets: Tensor | None
    labeled: Tensor             # (B,T) bool: frames whose labels count in losses/metrics
    classes: list[int]


def class_targets(label_map: Tensor, cls: Tensor) -> Tensor:
    """(B*K,1,S,S) float binary targets of image-major (image, class) queries: label maps (B,S,S),
    cls (B*K,) the class id of each query."""
    k = cls.shape[0] // label_map.shape[0]
    return (label_map.repeat_interleave(k, dim=0) == cls[:, None, None]).unsqueeze(1).float()


def _run_adapter(adapter: Adapter, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
    return adapter(inputs[0] if inputs else None, output)


class SegmentationModel(nn.Module):
    def __init__(self, image_encoder: ImageEncoder, prompt_encoder: PromptEncoderBase,
                 mask_decoder: MaskDecoderBase, prompt_generators: dict[str, PromptGenerator],
                 active_prompt: str, adapters: dict[str, tuple[Adapter, nn.Module]] | None = None,
                 temporal: TemporalModule | None = None):
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
        self.image_size = image_encoder.image_size

    # -- components ---------------------------------------------------------------------------
    def component_modules(self) -> dict[str, nn.Module]:
        """Top-level components by the names used in stages' ``trainable`` lists and reports."""
        out: dict[str, nn.Module] = {"image_encoder": self.image_encoder, "prompt_encoder": self.prompt_encoder,
                                     "mask_decoder": self.mask_decoder}
        for name, gen in self.prompt_generators.items():
            out[f"prompt:{name}"] = gen
        for name, ad in self.adapters.items():
            out[f"adapter:{name}"] = ad
        if self.temporal is not None:
            out["temporal"] = self.temporal
        return out

    def use_prompt(self, name: str) -> None:
        if name not in self.prompt_generators:
            known = ", ".join(self.prompt_generators)
            raise KeyError(f"prompt generator '{name}' is not part of this model; it has: {known}")
        self.active_prompt = name

    @property
    def prompt_generator(self) -> PromptGenerator:
        return cast(PromptGenerator, self.prompt_generators[self.active_prompt])

    # -- forward ------------------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        return self.image_encoder(images)

    def decode(self, embedding: Tensor, class_ids: Tensor, targets: Tensor | None = None,
               extra_dense: Tensor | None = None, prompt: str | None = None) -> SegOutput:
        gen = self.prompt_generators[prompt or self.active_prompt]
        image_pe = self.prompt_encoder.get_dense_pe()
        ctx = PromptContext(embedding, image_pe, self.prompt_encoder, self.mask_decoder, self.image_size,
                            class_ids, targets)
        return self._run_decoder(embedding, image_pe, gen(ctx), extra_dense)

    def _run_decoder(self, embedding: Tensor, image_pe: Tensor, prompts: Prompts,
                     extra_dense: Tensor | None) -> SegOutput:
        emb = prompts.image_embedding if prompts.image_embedding is not None else embedding
        dense = prompts.dense if extra_dense is None else prompts.dense + extra_dense
        low_res, iou = self.mask_decoder(emb, image_pe, prompts.sparse, dense)
        logits = F.interpolate(low_res, size=(self.image_size, self.image_size), mode="bilinear",
                               align_corners=False)
        return SegOutput(logits, low_res, iou, prompts)

    def forward(self, images: Tensor, class_ids: Tensor | None = None, targets: Tensor | None = None,
                prompt: str | None = None) -> SegOutput:
        """One query per image: images (B,3,S,S), class_ids (B,) (default all 1), targets (B,1,S,S)."""
        if class_ids is None:
            class_ids = torch.ones(images.shape[0], dtype=torch.long, device=images.device)
        return self.decode(self.encode(images), class_ids, targets, prompt=prompt)

    def forward_classes(self, images: Tensor, classes: list[int], label_map: Tensor | None = None,
                        prompt: str | None = None) -> tuple[Tensor, SegOutput]:
        """All classes of each image with one encoder pass.

        Returns (targets (B*K,1,S,S) or empty, output over B*K queries ordered image-major).
        label_map (B,S,S) long gives per-class binary targets (needed by simulated prompts).
        """
        emb = self.encode(images)
        b, k = images.shape[0], len(classes)
        emb = emb.repeat_interleave(k, dim=0)
        cls = torch.tensor(classes, device=images.device, dtype=torch.long).repeat(b)
        targets = class_targets(label_map, cls) if label_map is not None else None
        return (targets if targets is not None else torch.empty(0)), self.decode(emb, cls, targets, prompt=prompt)

    def forward_clip(self, frames: Tensor, classes: list[int], labels: Tensor | None = None,
                     labeled: Tensor | None = None, prompt: str | None = None,
                     on_frame: Any = None) -> ClipOutput:
        """Segment clips frame by frame through the temporal module (docs/temporal.md).

        frames (B,T,3,S,S); classes: K class ids; labels (B,T,S,S) long label maps; labeled (B,T) bool.
        Queries are (clip, class) pairs, so the temporal state is batched over B*K. Per frame: encode,
        ``temporal.read`` (fused embedding, extra dense prompt), decode, ``temporal.write`` with the
        sigmoid probabilities. Frame 0 is prompted by the prompt generator (clicks/boxes need frame-0
        labels); later frames use it again when it is automatic (APG, none) and otherwise SAM's no-mask
        prompt plus the memory readout. ``on_frame(t, SegOutput)``, when given, receives each frame's
        B*K-query output instead of it being stacked (bounded memory for long clips).
        """
        from samfx.errors import SamfxError

        if frames.ndim != 5 or frames.shape[2] != 3:
            raise SamfxError(f"forward_clip: frames must be (B,T,3,S,S), got {tuple(frames.shape)}; "
                             f"stack a clip's frames on dim 1")
        b, t_len = frames.shape[:2]
        k = len(classes)
        if k == 0:
            raise SamfxError("forward_clip: classes is empty; pass the class ids to segment (e.g. data.classes)")
        if labels is not None and tuple(labels.shape) != (b, t_len, *frames.shape[3:]):
            raise SamfxError(f"forward_clip: labels must be (B,T,S,S) = {(b, t_len, *frames.shape[3:])}, "
                             f"got {tuple(labels.shape)}")
        if labeled is None:
            labeled = torch.full((b, t_len), labels is not None, dtype=torch.bool, device=frames.device)
        elif tuple(labeled.shape) != (b, t_len):
            raise SamfxError(f"forward_clip: labeled must be (B,T) = {(b, t_len)}, got {tuple(labeled.shape)}")
        labeled = labeled.to(device=frames.device, dtype=torch.bool)
        name = prompt or self.active_prompt
        gen = self.prompt_generators[name]
        if gen.needs_targets and (labels is None or not bool(labeled[:, 0].all())):
            missing = "no labels were given" if labels is None else \
                f"clip(s) {torch.nonzero(~labeled[:, 0]).flatten().tolist()} have frame 0 unlabeled"
            raise SamfxError(f"forward_clip: prompt '{name}' needs frame-0 labels of every clip, but {missing}; "
                             f"use an automatic prompt (e.g. apg) or label frame 0")
        cls = torch.tensor(classes, device=frames.device, dtype=torch.long).repeat(b)
        temporal = self.temporal
        state = temporal.init_state(b * k, frames.device) if temporal is not None else None
        logits, ious, targets = [], [], []
        for t in range(t_len):
            emb = self.encode(frames[:, t]).repeat_interleave(k, dim=0)
            tgt = None
            if labels is not None:
                tgt = class_targets(labels[:, t], cls)
                if on_frame is None:
                    targets.append(tgt.view(b, k, *tgt.shape[2:]))
            # a state of None is a module's own business (e.g. nothing seen yet), not 'no memory'
            fused, extra = temporal.read(state, emb) if temporal is not None else (emb, None)
            if t == 0 or not gen.needs_targets:
                out = self.decode(fused, cls, tgt if gen.needs_targets else None, extra_dense=extra, prompt=name)
                if out.prompts.aux_losses and torch.is_grad_enabled():  # evaluation may ignore them
                    raise SamfxError(f"forward_clip: prompt '{name}' returned auxiliary losses "
                                     f"({', '.join(out.prompts.aux_losses)}), which clip training does not "
                                     f"use yet; train it in an image stage (data.clip_length: 0)")
            else:  # a simulated user prompts frame 0 only; later frames: no-mask prompt + memory
                sparse, dense = self.prompt_encoder(points=None, boxes=None, masks=None)
                n = fused.shape[0]
                no_prompt = Prompts(sparse.expand(n, -1, -1), dense.expand(n, -1, -1, -1))
                out = self._run_decoder(fused, self.prompt_encoder.get_dense_pe(), no_prompt, extra)
            if temporal is not None:
                state = temporal.write(state, emb, torch.sigmoid(out.logits))
            if on_frame is not None:
                on_frame(t, out)
            else:
                logits.append(out.logits.view(b, k, *out.logits.shape[2:]))
                ious.append(out.iou.reshape(b, k))
        return ClipOutput(torch.stack(logits, 1) if logits else None, torch.stack(ious, 1) if ious else None,
                          torch.stack(targets, 1) if targets else None, labeled, list(classes))
