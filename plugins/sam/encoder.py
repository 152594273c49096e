"""SAM's ViT image encoder as a samfx component (parameter names exactly SAM's).

An official SAM state dict's ``image_encoder.*`` keys load unchanged at 1024²; at another input
size ``convert_state_dict`` resizes ``pos_embed`` (bilinear) and each block's rel-pos tables
(linear), block by block, to this encoder's shapes.
"""
from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from samfx.contracts.errors import RecipeError, SamfxError, did_you_mean
from samfx.contracts.interfaces import BuildContext, ImageEncoder, ImageFeatures, Site
from samfx_plugins.sam.config import PROMPT_DIM, SIZES, SamEncoderConfig
from samfx_plugins.sam.fast import set_fast_path

# SAM's pixel statistics on the 0..255 scale (segment_anything.build_sam).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def size_preset(size: str, who: str) -> dict:
    """The geometry of `size`, or a one-line error listing the sizes."""
    if size not in SIZES:
        raise RecipeError(f"image_encoder '{who}': unknown size '{size}'{did_you_mean(size, SIZES)}; "
                          f"sizes: {', '.join(SIZES)}")
    return SIZES[size]


def vit_kwargs(preset: dict, out_dim: int = PROMPT_DIM) -> dict:
    """Keyword arguments of segment-anything's ``ImageEncoderViT`` for a size preset (as build_sam)."""
    return dict(embed_dim=preset["embed_dim"], depth=preset["depth"], num_heads=preset["num_heads"],
                global_attn_indexes=tuple(preset["global_attn_indexes"]), window_size=preset["window_size"],
                mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
                out_chans=out_dim)


def resize_pos_embed(pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """(1,H,W,C) absolute position embedding resized (bilinear) to (1,*grid,C)."""
    out = F.interpolate(pos.permute(0, 3, 1, 2).float(), size=grid, mode="bilinear", align_corners=False)
    return out.permute(0, 2, 3, 1).to(pos.dtype)


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """(L,C) rel-pos table resized (linear, align_corners=False, as the SAMUS authors) to (length,C)."""
    out = F.interpolate(table.t()[None].float(), size=length, mode="linear", align_corners=False)
    return out[0].t().to(table.dtype)


def fit_geometry(state: dict[str, Tensor], encoder: SamViTBase) -> dict[str, Tensor]:
    """Resize ``pos_embed`` and each block's ``attn.rel_pos_{h,w}`` in `state` to `encoder`'s shapes.

    Blocks are matched by index (``blocks.<i>.``), so global and window blocks each get their own
    length; tensors whose channel width differs are left alone (the loader reports the mismatch).
    """
    out = dict(state)
    own = encoder.state_dict()
    pos = out.get("pos_embed")
    if pos is not None and "pos_embed" in own:
        want = own["pos_embed"].shape
        if pos.ndim == 4 and pos.shape != want and pos.shape[-1] == want[-1]:
            out["pos_embed"] = resize_pos_embed(pos, (want[1], want[2]))
    for i in range(len(encoder.blocks)):
        for axis in ("h", "w"):
            key = f"blocks.{i}.attn.rel_pos_{axis}"
            if key in out and key in own:
                t, want = out[key], own[key].shape
                if t.ndim == 2 and t.shape != want and t.shape[1] == want[1]:
                    out[key] = resize_rel_pos(t, want[0])
    return out


def vit_sites(blocks: Iterable[Any], dim: int, grid: tuple[int, int], global_idx: tuple[int, ...],
              window: int) -> dict[str, Site]:
    """Adapter sites of SAM-style ViT blocks: ``blocks.N.attn.qkv`` ("linear"; spatial = the window or
    grid its attention sees), ``blocks.N.attn.proj`` (attention output), ``blocks.N.mlp`` and ``blocks.N``
    ("bhwc" token maps)."""
    out: dict[str, Site] = {}
    spatial = cast("tuple[int, int]", tuple(grid))
    for i, blk in enumerate(blocks):
        attn_grid = spatial if i in global_idx else (window, window)
        out[f"blocks.{i}.attn.qkv"] = Site(f"blocks.{i}.attn.qkv", blk.attn.qkv, "linear", dim, 3 * dim, attn_grid)
        # attention output (after its projection): where MSA's Space_Adapter sits
        out[f"blocks.{i}.attn.proj"] = Site(f"blocks.{i}.attn.proj", blk.attn.proj, "bhwc", dim, dim, attn_grid)
        out[f"blocks.{i}.mlp"] = Site(f"blocks.{i}.mlp", blk.mlp, "bhwc", dim, dim, spatial)
        out[f"blocks.{i}"] = Site(f"blocks.{i}", blk, "bhwc", dim, dim, spatial)
    return out


class SamViTBase(ImageEncoderViT, ImageEncoder):
    """What SAM-style ViT encoders share: geometry attributes, input check, optional pixel
    normalisation, ViT adapter sites and checkpoint geometry fitting. Subclasses call
    ``ImageEncoderViT.__init__`` through ``super().__init__`` and then :meth:`_setup`."""

    # set by segment_anything's ImageEncoderViT (untyped) and _setup
    patch_embed: nn.Module
    pos_embed: Tensor
    blocks: nn.ModuleList
    neck: nn.Sequential
    pixel_mean: Tensor
    pixel_std: Tensor

    def _setup(self, who: str, size: str, image_size: int, tokens: int, pixel_norm: bool) -> None:
        preset = SIZES[size]
        self.who, self.size = who, size
        self.image_size = image_size
        self.embed_dim = cast(nn.Conv2d, self.neck[0]).out_channels
        self.encoder_dim = preset["embed_dim"]
        self.embed_size = (tokens, tokens)
        self.global_attn_indexes = tuple(preset["global_attn_indexes"])
        self.window_size = preset["window_size"]
        self.pixel_norm = pixel_norm
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1) / 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1) / 255, persistent=False)
        self.checkpoint_blocks = False

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each ViT block in backward instead of keeping its activations (training memory)."""
        self.checkpoint_blocks = enabled

    def run_block(self, block: nn.Module, *args: Tensor) -> Tensor:
        if self.checkpoint_blocks and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def check_input(self, x: Tensor) -> None:
        s = self.image_size
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (s, s):
            raise SamfxError(f"image_encoder '{self.who}': expected images (B,3,{s},{s}), got {tuple(x.shape)}; "
                             f"resize the inputs or set model.image_encoder.image_size")

    def normalize(self, x: Tensor) -> Tensor:
        """SAM's pixel mean/std applied to [0,1] inputs when ``pixel_norm`` is on."""
        return (x - self.pixel_mean) / self.pixel_std if self.pixel_norm else x

    def sites(self) -> dict[str, Site]:
        return vit_sites(self.blocks, self.encoder_dim, self.embed_size, self.global_attn_indexes,
                         self.window_size)

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return fit_geometry(state, self)


class SamImageEncoder(SamViTBase):
    """SAM's ImageEncoderViT: images (B,3,S,S) in [0,1] -> ImageFeatures with embedding (B,256,S/16,S/16).

    ``default_trainable()`` is every parameter (full fine-tuning, as MedSAM).
    """

    def __init__(self, size: str = "vit_b", image_size: int = 1024, fast_attention: bool = True,
                 pixel_norm: bool = True, out_dim: int = PROMPT_DIM):
        preset = size_preset(size, "sam")
        if image_size <= 0 or image_size % 16:
            raise RecipeError(f"image_encoder 'sam': image_size must be a positive multiple of 16 (the patch "
                              f"size), got {image_size}; SAM's default is 1024")
        super().__init__(img_size=image_size, patch_size=16, **vit_kwargs(preset, out_dim))
        self._setup("sam", size, image_size, image_size // 16, pixel_norm)
        set_fast_path(self, fast_attention)

    def forward(self, x: Tensor) -> ImageFeatures:
        self.check_input(x)
        x = self.patch_embed(self.normalize(x)) + self.pos_embed
        for blk in self.blocks:
            x = self.run_block(blk, x)
        return ImageFeatures(self.neck(x.permute(0, 3, 1, 2)))

    def default_trainable(self) -> list[str]:
        return [n for n, _ in self.named_parameters()]


def build_sam_encoder(cfg: SamEncoderConfig, ctx: BuildContext) -> SamImageEncoder:
    ctx.fast_attention = cfg.fast_attention
    return SamImageEncoder(cfg.size, cfg.image_size, cfg.fast_attention, cfg.pixel_norm, cfg.out_dim)
