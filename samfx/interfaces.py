"""The small interfaces that components implement (torch side of the plugin contract).

Shapes: images (B,3,S,S) float in [0,1] (grayscale repeated to 3 channels; no SAM mean/std);
image embedding (B,C,h,w) with C = ``BuildContext.embed_dim``, the prompt/decoder width (256 in SAM's
checkpoints; recipes may set less, e.g. 64); targets (B,1,S,S) in {0,1}.
A factory registered in the registry is called as ``factory(config, context)`` with the
component's schema instance and a :class:`BuildContext`, and returns one of these modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class BuildContext:
    """Geometry shared by the components of one model, filled as they are built (encoder first)."""

    image_size: int = 1024            # S: input side in pixels
    embed_dim: int = 256              # C: image-embedding / prompt width
    embed_size: tuple[int, int] = (64, 64)  # (h, w) of the image embedding
    encoder_dim: int = 768            # ViT width of the encoder (for adapters)
    num_classes: int = 1              # foreground classes the data queries (CAMUS: 3)
    # "load_weights": whether the model's checkpoint will be loaded; "weight_shapes": None or a function
    # giving the key -> shape table of the weights the model will receive (to size a component from them)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Site:
    """A named place in an encoder where an adapter attaches through a forward hook.

    ``layout`` tells adapters what the hooked module's output looks like:
    ``"bchw"`` feature map, ``"bhwc"`` ViT tokens, ``"linear"`` output of an nn.Linear.
    """

    name: str
    module: nn.Module
    layout: str
    in_dim: int
    out_dim: int
    spatial: tuple[int, int] | None = None


class ForeignKeys:
    """Lets a component read its part of a checkpoint written by another project (docs/plugins.md)."""

    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """Return `state` (a whole file's state dict) with the foreign keys this component owns renamed to
        ``prefix + own key``; keys it does not own pass through unchanged. Raise CheckpointError (one
        line, no file name: the caller adds it) when the file's part cannot fit this component."""
        return state

    def export_foreign_state(self, fmt: str, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """The inverse for ``samfx convert --to fmt``: `state` with this component's keys (under
        `prefix`) renamed to layout `fmt`'s names; unchanged when `fmt` keeps samfx's names."""
        return state


class ImageEncoder(ForeignKeys, nn.Module):
    """Maps images (B,3,S,S) to an image embedding (B,embed_dim,h,w)."""

    image_size: int
    embed_dim: int
    embed_size: tuple[int, int]
    encoder_dim: int

    def sites(self) -> dict[str, Site]:
        """Named adapter sites (e.g. ``cnn.out``, ``blocks.3.qkv``)."""
        return {}

    def default_trainable(self) -> list[str]:
        """Parameter names (relative to this module) trained by the method's default recipe."""
        return [n for n, _ in self.named_parameters()]

    def new_parameter_prefixes(self) -> list[str]:
        """Parameter-name prefixes this encoder adds on top of SAM's (allowed missing in a SAM checkpoint)."""
        return []

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Adapt a foreign state dict (keys relative to this module) to this module's layout."""
        return state


class PromptEncoderBase(nn.Module):
    """SAM-style prompt encoder: points/boxes/masks -> (sparse (B,N,C), dense (B,C,h,w)); dense PE."""

    def get_dense_pe(self) -> Tensor:  # (1,C,h,w)
        raise NotImplementedError


class MaskDecoderBase(nn.Module):
    """SAM-style mask decoder, batched: one prompt set per image.

    ``forward(image_embedding (B,C,h,w), image_pe (1,C,h,w), sparse (B,N,C), dense (B,C,h,w))``
    returns ``(low_res_logits (B,1,4h,4w), iou_pred (B,1))``.
    """

    transformer_dim: int

    def output_tokens(self) -> Tensor:
        """The decoder's learned output tokens (IoU token + mask tokens), shape (T,C)."""
        raise NotImplementedError


@dataclass
class PromptContext:
    """What a prompt generator may look at to produce prompts for one batch."""

    image_embedding: Tensor           # (B,C,h,w)
    image_pe: Tensor                  # (1,C,h,w)
    prompt_encoder: PromptEncoderBase
    mask_decoder: MaskDecoderBase
    image_size: int
    class_ids: Tensor                 # (B,) long, 1-based class of each query
    targets: Tensor | None = None     # (B,1,S,S) binary, present in training / simulated-prompt eval


@dataclass
class Prompts:
    """Prompt embeddings for the mask decoder. ``image_embedding`` replaces the encoder's when set.

    ``aux_losses``: scalar training losses of the generator's own (e.g. box regression against
    ``ctx.targets``), already weighted; the trainer adds them to the stage's loss and logs each as
    ``train/aux/<name>``. Image stages only: clip (temporal) stages raise when a generator returns any."""

    sparse: Tensor                    # (B,N,C)
    dense: Tensor                     # (B,C,h,w)
    image_embedding: Tensor | None = None
    points: Tensor | None = None      # (B,N,2) pixel coords of simulated clicks, for overlays
    point_labels: Tensor | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


class PromptGenerator(ForeignKeys, nn.Module):
    """Produces prompts for each query. ``needs_targets`` is True for simulated clicks/boxes."""

    needs_targets: bool = False

    def forward(self, ctx: PromptContext) -> Prompts:  # pragma: no cover - interface
        raise NotImplementedError


class Adapter(ForeignKeys, nn.Module):
    """Attached to a :class:`Site`; ``forward(x, y)`` gets the hooked module's input x and output y
    and returns the new output (same shape as y)."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class TemporalModule(ForeignKeys, nn.Module):
    """State carried across the frames of a clip.

    Per frame t: ``read(state, emb)`` before the decoder returns (embedding, extra dense prompt or
    None); ``write(state, emb, probs)`` after it stores the frame (probs (B,1,S,S) in [0,1]) and
    returns the new state. ``init_state(batch, device)`` starts each clip. Memory must stay bounded.
    """

    def init_state(self, batch_size: int, device: torch.device) -> Any:
        raise NotImplementedError

    def read(self, state: Any, image_embedding: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def write(self, state: Any, image_embedding: Tensor, mask_probs: Tensor) -> Any:
        raise NotImplementedError


class Loss(nn.Module):
    """``forward(logits (B,1,S,S), targets (B,1,S,S)) -> scalar``."""


class DataSource:
    """What a ``dataset`` component builds: a way to get a samfx HDF5 store (see docs/data.md).

    ``path(cache_dir)`` returns the store file, creating it on first use when the source is
    generated or imported (synthetic data, CAMUS folder...), and reusing it afterwards.
    """

    def path(self, cache_dir: str) -> Path:
        raise NotImplementedError
