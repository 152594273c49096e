"""The small interfaces that components implement (torch side of the plugin contract).

Shapes: images (B,3,S,S) float in [0,1] (grayscale repeated to 3 channels; no SAM mean/std);
image embedding (B,C,h,w) with C = ``BuildContext.embed_dim``, the prompt/decoder width (256 in SAM's
checkpoints; recipes may set less, e.g. 64); targets (B,1,S,S) in {0,1}.
A factory registered in the registry is called as ``factory(config, context)`` with the
component's schema instance and a :class:`BuildContext`, and returns one of these modules.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samfx.contracts.errors import RecipeError, SamfxError


@dataclass
class BuildContext:
    """Geometry shared by the components of one model, filled as they are built (encoder first), and
    kept by the model (``SegmentationModel.context``) so that later components (losses, evaluation
    prompts) are built against the same geometry."""

    image_size: int = 1024            # S: input side in pixels
    embed_dim: int = 256              # C: image-embedding / prompt width
    embed_size: tuple[int, int] = (64, 64)  # (h, w) of the image embedding
    encoder_dim: int = 768            # width of the encoder's own tokens/features (for adapters)
    high_res_dims: tuple[int, ...] = ()  # channels of ImageFeatures.high_res, finest first (SAM2: C, C)
    num_classes: int = 1              # foreground classes the data queries (CAMUS: 3)
    # Whether the model's checkpoint will be loaded: components with weight files of their own (apg's
    # `weights`) load them only then, not when a trained run's model is rebuilt around its checkpoint.
    load_weights: bool = True
    # None, or a function giving the key -> shape table of the weights the model will receive, for
    # components that size themselves from them (lora with `rank: null`).
    weight_shapes: Callable[[], dict[str, tuple[int, ...]]] | None = None
    # Set by the encoder: whether its attention takes the fast path, which SAM's decoder follows.
    fast_attention: bool = True

    def take_geometry(self, encoder: ImageEncoder) -> None:
        """Copy the built encoder's geometry (size, widths, grid, finer levels) into this context."""
        h, w = encoder.embed_size                       # a tuple, whatever sequence the encoder keeps
        self.image_size, self.embed_dim = encoder.image_size, encoder.embed_dim
        self.embed_size, self.encoder_dim = (h, w), encoder.encoder_dim
        self.high_res_dims = tuple(encoder.high_res_dims)


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


# -- data passed between components ---------------------------------------------------------------
@dataclass
class ImageFeatures:
    """What an image encoder returns for a batch of B images.

    ``embedding`` (B,C,h,w) is the level prompts and decoders work on (C = ``BuildContext.embed_dim``);
    ``high_res`` holds finer levels, finest first (SAM2: the neck's stride 4 (B,C,4h,4w) and stride 8
    (B,C,2h,2w) levels, which its decoder projects to C/8 and C/4 with its own conv_s0 / conv_s1),
    for decoders that use them; ``pos`` the encoder's own positional encoding of ``embedding``
    ((1 or B),C,h,w) when it has one (SAM2's neck), for temporal modules.
    """

    embedding: Tensor
    high_res: tuple[Tensor, ...] = ()
    pos: Tensor | None = None

    @property
    def batch_size(self) -> int:
        # no int(): under torch.export a symbolic batch size would become a constant (ONNX export)
        return self.embedding.shape[0]

    def per_query(self, k: int) -> ImageFeatures:
        """The features of each image repeated for its `k` queries (image-major): for modules whose
        computation differs per query (the APG mixes class tokens into the image). Decoders do not need
        it: they take ``DecoderInput.queries_per_image`` instead."""
        if k == 1:
            return self
        rep = [t.repeat_interleave(k, dim=0) for t in (self.embedding, *self.high_res)]
        pos = self.pos.repeat_interleave(k, dim=0) if self.pos is not None and self.pos.shape[0] > 1 else self.pos
        return ImageFeatures(rep[0], tuple(rep[1:]), pos)


@dataclass
class FrameInfo:
    """Where a temporal module is in a clip. ``prompted``: this frame's prompts come from the prompt
    generator (a per-frame schedule; unprompted frames get the no-prompt embedding and the memory)."""

    t: int
    num_frames: int
    prompted: bool
    queries_per_image: int = 1        # K: the state holds B*K queries, image-major


@dataclass
class DecoderInput:
    """One mask-decoder call over Q queries of B images, image-major: query q belongs to image
    ``q // queries_per_image`` (K classes per image without copying the features K times, as SAM2's
    ``repeat_image``). ``features`` has batch B = Q / queries_per_image."""

    features: ImageFeatures
    image_pe: Tensor                  # (1,C,h,w) the prompt encoder's dense positional encoding
    sparse: Tensor                    # (Q,N,C) sparse prompt embeddings
    dense: Tensor                     # (Q,C,h,w) dense prompt embeddings
    queries_per_image: int = 1
    multimask: bool = False           # SAM's three-mask output instead of the single mask
    # The clip frame being decoded (None: an image), and the points given to the prompt encoder per
    # query (clicks, and a box as its 2 corners, as SAM2 counts them; 0 on an unprompted frame): for
    # decoders whose output policy differs on tracked frames (SAM2.1's multimask tracking).
    frame: FrameInfo | None = None
    num_points: int = 0

    @property
    def num_queries(self) -> int:
        return int(self.sparse.shape[0])

    def check(self, who: str) -> None:
        """A one-line error naming decoder `who` unless Q = B x queries_per_image prompt sets are given."""

        b, k, q = self.features.embedding.shape[0], self.queries_per_image, self.sparse.shape[0]
        if b * k != q or self.dense.shape[0] != q:
            raise SamfxError(f"mask_decoder '{who}': {b} images x {k} queries each != {q} sparse / "
                             f"{self.dense.shape[0]} dense prompt sets; pass one prompt set per query")


def add_per_image(per_query: Tensor, per_image: Tensor, k: int) -> Tensor:
    """``per_query`` (B*K,...) plus ``per_image`` (B,...), each image's tensor shared by its K queries
    through broadcasting (no K-fold copy of it); a plain sum when both are per query."""
    if k == 1 or per_image.shape[0] == per_query.shape[0]:
        return per_query + per_image
    return (per_query.view(-1, k, *per_query.shape[1:]) + per_image.unsqueeze(1)).flatten(0, 1)


@dataclass
class DecoderOutput:
    """A mask decoder's result for Q queries; M = 1 mask, or 3 with ``multimask``."""

    low_res: Tensor                   # (Q,M,h',w') mask logits (SAM: h' = 4h)
    iou: Tensor                       # (Q,M) predicted IoU
    mask_tokens: Tensor | None = None  # (Q,M,C) the decoder's output mask tokens (SAM2's object pointers)
    object_score: Tensor | None = None  # (Q,1) logit that the object is visible (SAM2); None: always


@dataclass
class MemoryReadout:
    """What a temporal module's ``read`` gives the decoder: per-query features conditioned on the
    memory (None: the encoder's, unchanged) and an extra dense prompt (Q,C,h,w) (None: nothing)."""

    features: ImageFeatures | None = None
    dense: Tensor | None = None


# -- components -------------------------------------------------------------------------------------
class ForeignKeys:
    """Checkpoint hooks every component has (docs/plugins.md): reading weights written by another
    project or at another geometry, writing them back, and which of its keys may be missing."""

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Adapt this component's part of a checkpoint (keys relative to it) to its layout, e.g. resize
        position tables to this image size or map another project's key names."""
        return state

    def new_parameter_prefixes(self) -> list[str]:
        """Parameter-name prefixes (relative to this component) that a base checkpoint of its family does
        not have (allowed missing when loading one, e.g. SAMUS's CNN branch in a SAM file)."""
        return []

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
    """``forward(images (B,3,S,S)) -> ImageFeatures`` with ``embedding`` (B,embed_dim,h,w)."""

    image_size: int
    embed_dim: int
    embed_size: tuple[int, int]
    encoder_dim: int
    high_res_dims: tuple[int, ...] = ()

    def sites(self) -> dict[str, Site]:
        """Named adapter sites (e.g. ``cnn.out``, ``blocks.3.qkv``)."""
        return {}

    def default_trainable(self) -> list[str]:
        """Parameter names (relative to this module) trained by the method's default recipe."""
        return [n for n, _ in self.named_parameters()]

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute activations in backward instead of keeping them (``train.activation_checkpointing``).
        Encoders that cannot do it raise a RecipeError saying so."""

        if enabled:
            raise RecipeError(f"image encoder {type(self).__name__} does not support activation "
                              f"checkpointing; set train.activation_checkpointing to false")


class PromptEncoderBase(ForeignKeys, nn.Module):
    """SAM-style prompt encoder.

    ``forward(points=(coords (Q,N,2) xy pixels, labels (Q,N) int: 1 fg, 0 bg, -1 pad) | None,
    boxes=(Q,4) xyxy pixels | None, masks=(Q,1,4h,4w) | None)`` returns ``(sparse (Q,N',C), dense)``
    where dense is (Q,C,h,w), or (1,C,h,w) when no mask is given (SAM's no-mask embedding): callers use
    :meth:`encode`, which returns both with batch Q.
    """

    def get_dense_pe(self) -> Tensor:  # (1,C,h,w)
        raise NotImplementedError

    def encode(self, n: int, points: tuple[Tensor, Tensor] | None = None, boxes: Tensor | None = None,
               masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(sparse (n,N',C), dense (n,C,h,w)) for `n` queries; batch-1 outputs are expanded (no copy)."""
        sparse, dense = self(points=points, boxes=boxes, masks=masks)
        if sparse.shape[0] == 1 and n != 1:
            sparse = sparse.expand(n, -1, -1)
        if dense.shape[0] == 1 and n != 1:
            dense = dense.expand(n, -1, -1, -1)
        return sparse, dense


class MaskDecoderBase(ForeignKeys, nn.Module):
    """``forward(DecoderInput) -> DecoderOutput``: one prompt set per query (see :class:`DecoderInput`)."""

    transformer_dim: int

    def output_tokens(self) -> Tensor:
        """The decoder's learned output tokens (IoU token + mask tokens), shape (T,C)."""
        raise NotImplementedError


@dataclass
class PromptContext:
    """What a prompt generator may look at to produce prompts for Q = B*K queries (image-major).

    ``frame`` and ``previous`` are set on the frames of a clip (``forward_clip``) and None on images:
    where the frame is, and the decoder's output on the previous frame for the same queries (low-res
    logits (Q,1,h',w'), predicted IoU (Q,1), object score (Q,1) or None), None on a clip's first frame.
    ``targets`` is set only for generators with ``needs_targets`` (docs/plugins.md has the table)."""

    features: ImageFeatures           # per image (batch B)
    image_pe: Tensor                  # (1,C,h,w)
    prompt_encoder: PromptEncoderBase
    mask_decoder: MaskDecoderBase
    image_size: int
    class_ids: Tensor                 # (Q,) long, 1-based class of each query
    targets: Tensor | None = None     # (Q,1,S,S) binary, present in training / simulated-prompt eval
    queries_per_image: int = 1        # K
    frame: FrameInfo | None = None    # the clip frame being prompted; None: an image
    previous: DecoderOutput | None = None  # frame t-1's decoder output for these queries; None: none

    @property
    def num_queries(self) -> int:
        return self.class_ids.shape[0]   # no int(), as ImageFeatures.batch_size


@dataclass
class Prompts:
    """Prompt embeddings for the mask decoder over Q queries.

    ``features``: per-query features (batch Q) replacing the encoder's, for generators that rewrite the
    image features (the APG). ``aux_losses``: scalar training losses of the generator's own (e.g. box
    regression against ``ctx.targets``), already weighted; the trainer adds them to the stage's loss and
    logs each as ``train/aux/<name>``. Image stages only: clip stages raise when a generator returns any.
    ``mask``: a mask the user gave (1 inside), which *is* the output of the queries it prompts (SAM2's
    ``add_new_mask``); the decoder still runs on the other fields, for its tokens and object score."""

    sparse: Tensor                    # (Q,N,C)
    dense: Tensor                     # (Q,C,h,w)
    features: ImageFeatures | None = None
    points: Tensor | None = None      # (Q,N,2) pixel coords of simulated clicks, for overlays
    point_labels: Tensor | None = None
    boxes: Tensor | None = None       # (Q,4) xyxy pixel boxes given to the prompt encoder, for overlays
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    mask: Tensor | None = None        # (Q,1,S,S) a given mask: the output of these queries


GIVEN_MASK_LOGIT = 10.0   # a given mask as logits: +-10 inside / outside, as SAM2 scales one


def given_mask_logits(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """A given mask (N,1,H,W), 1 inside, as +-GIVEN_MASK_LOGIT logits area-pooled to `size`: SAM's dense
    mask prompt (4x the embedding) and a given mask's low-res output (what memories store)."""
    return (2 * F.interpolate(mask, size=size, mode="area") - 1) * GIVEN_MASK_LOGIT


class PromptGenerator(ForeignKeys, nn.Module):
    """``forward(PromptContext) -> Prompts``.

    Attributes (class defaults; docs/plugins.md has the reference):
    ``needs_targets``: it reads ``ctx.targets`` (simulated clicks / boxes / masks), so the frames it
    prompts must be labeled; with ``uses_previous``, only those it prompts without a previous output.
    ``gives_mask``: its prompts carry the answer (``Prompts.mask``): it prompts frames of a sequence
    (semi-supervised), never an image, and the frames it gives are not scored.
    ``uses_previous``: it prompts from ``ctx.previous`` when there is one (tracking by prompting).
    ``default_schedule``: which frames of a clip it prompts unless the recipe's ``schedule`` key says
    otherwise: ``first``, ``every``, ``ed_es`` or a list of frame indices (samfx.config.schedule); None:
    ``first`` when it needs targets (a simulated user clicks once), else ``every``."""

    needs_targets: bool = False
    gives_mask: bool = False
    uses_previous: bool = False
    default_schedule: str | None = None

    def forward(self, ctx: PromptContext) -> Prompts:  # pragma: no cover - interface
        raise NotImplementedError


class Adapter(ForeignKeys, nn.Module):
    """Attached to a :class:`Site`; ``forward(x, y)`` gets the hooked module's input x and output y
    and returns the new output (same shape as y)."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


StateT = TypeVar("StateT")


class TemporalModule(ForeignKeys, nn.Module, Generic[StateT]):
    """State carried across the frames of a clip, batched over Q = B*K queries (image-major).

    Generic in its state type ``StateT``: what ``init_state`` returns and ``read`` / ``write`` take
    (``write`` returns the next one); a memory declares it, e.g. ``class M(TemporalModule[MyState])``.
    ``init_state(Q, device)`` starts each clip. Per frame: ``read(state, features, frame)`` before the
    decoder (features per image, batch B; ``frame.queries_per_image`` = K) returns a
    :class:`MemoryReadout`; ``write(state, features, decoded, frame)`` after it stores the frame from the
    decoder's output (low-res logits, mask tokens, object score) and returns the new state. Memory
    must stay bounded.
    """

    def init_state(self, batch_size: int, device: torch.device) -> StateT:
        raise NotImplementedError

    def read(self, state: StateT, features: ImageFeatures, frame: FrameInfo) -> MemoryReadout:
        raise NotImplementedError

    def write(self, state: StateT, features: ImageFeatures, decoded: DecoderOutput, frame: FrameInfo) -> StateT:
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
