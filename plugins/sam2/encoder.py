"""SAM2.1's image encoder (Hiera trunk + FPN neck) as a samfx component, built from sam2's own modules.

Parameter names are SAM2's under ``image_encoder.`` (``trunk.*``, ``neck.*``), so an official file's
encoder keys load unchanged, at any image size divisible by 32 (Hiera interpolates its position
embedding to the grid). ``forward`` returns the neck's stride-16 level as the embedding (plus
``no_mem_embed`` in image mode, as SAM2ImagePredictor), its stride-4 and stride-8 levels as ``high_res``
(the mask decoder projects them with its conv_s0/conv_s1) and the neck's sine position encoding of the
stride-16 level as ``pos``; the stride-32 level is dropped (SAM2's ``scalp: 1``).
"""
from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from samfx.contracts.errors import RecipeError, SamfxError, did_you_mean
from samfx.contracts.interfaces import BuildContext, ImageEncoder, ImageFeatures, Site
from samfx_plugins.sam2.config import HIERA, SAM2_DIM, Sam2EncoderConfig
from samfx_plugins.sam2.deps import require_sam2
from samfx_plugins.sam2.keys import NO_MEM_EMBED, is_memory_key

require_sam2()

from sam2.modeling.backbones.hieradet import Hiera  # noqa: E402
from sam2.modeling.backbones.image_encoder import FpnNeck  # noqa: E402
from sam2.modeling.position_encoding import PositionEmbeddingSine  # noqa: E402

# SAM2Transforms' ImageNet statistics on the [0,1] scale.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


def hiera_preset(size: str) -> dict:
    if size not in HIERA:
        raise RecipeError(f"image_encoder 'sam2': unknown size '{size}'{did_you_mean(size, HIERA)}; "
                          f"sizes: {', '.join(HIERA)}")
    return HIERA[size]


def build_trunk_neck(size: str, drop_path_rate: float = 0.0) -> tuple[Any, Any]:
    """Hiera and FpnNeck exactly as sam2's SAM2.1 config of `size` instantiates them."""
    p = hiera_preset(size)
    trunk = Hiera(embed_dim=p["embed_dim"], num_heads=p["num_heads"], stages=tuple(p["stages"]),
                  global_att_blocks=tuple(p["global_att_blocks"]), window_spec=tuple(p["window_spec"]),
                  window_pos_embed_bkg_spatial_size=tuple(p["window_pos_embed_bkg_spatial_size"]),
                  drop_path_rate=drop_path_rate)
    pos = PositionEmbeddingSine(num_pos_feats=SAM2_DIM, normalize=True, scale=None, temperature=10000)
    neck = FpnNeck(position_encoding=pos, d_model=SAM2_DIM, backbone_channel_list=list(trunk.channel_list),
                   fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")
    return trunk, neck


class Sam2ImageEncoder(ImageEncoder):
    """images (B,3,S,S) in [0,1] -> ImageFeatures(embedding (B,256,S/16,S/16), high_res ((B,256,S/4,S/4),
    (B,256,S/8,S/8)), pos (B,256,S/16,S/16)). ``default_trainable()`` is every parameter."""

    trunk: Any   # sam2's Hiera and FpnNeck (untyped)
    neck: Any
    pixel_mean: Tensor
    pixel_std: Tensor

    def __init__(self, size: str = "tiny", image_size: int = 1024, pixel_norm: bool = True,
                 no_memory_embed: bool = True, drop_path_rate: float = 0.0):
        super().__init__()
        if image_size <= 0 or image_size % 32:
            raise RecipeError(f"image_encoder 'sam2': image_size must be a positive multiple of 32 (Hiera's "
                              f"total stride), got {image_size}; SAM2's default is 1024")
        self.trunk, self.neck = build_trunk_neck(size, drop_path_rate)
        self.size, self.image_size, self.pixel_norm = size, image_size, pixel_norm
        self.embed_dim = SAM2_DIM
        self.embed_size = (image_size // 16, image_size // 16)
        self.encoder_dim = int(self.trunk.channel_list[0])   # the last stage's width
        self.high_res_dims = (SAM2_DIM, SAM2_DIM)
        self.no_mem_embed: nn.Parameter | None = None
        if no_memory_embed:
            # SAM2Base's parameter (1,1,C), trunc-normal(0.02) initialised as there
            self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, SAM2_DIM))
            nn.init.trunc_normal_(self.no_mem_embed, std=0.02)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.checkpoint_blocks = False

    # -- forward ------------------------------------------------------------------------------
    def run_trunk(self, x: Tensor) -> list[Tensor]:
        """Hiera's forward (every stage's output, (B,C,H,W)), with optional activation checkpointing."""
        t = self.trunk
        x = t.patch_embed(x)
        x = x + t._get_pos_embed(x.shape[1:3])
        outs: list[Tensor] = []
        ends = set(t.stage_ends)
        for i, blk in enumerate(t.blocks):
            if self.checkpoint_blocks and torch.is_grad_enabled():
                x = cast(Tensor, checkpoint(blk, x, use_reentrant=False))
            else:
                x = blk(x)
            if i in ends:
                outs.append(x.permute(0, 3, 1, 2))
        return outs

    def forward(self, x: Tensor) -> ImageFeatures:
        s = self.image_size
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (s, s):
            raise SamfxError(f"image_encoder 'sam2': expected images (B,3,{s},{s}), got {tuple(x.shape)}; "
                             f"resize the inputs or set model.image_encoder.image_size")
        if self.pixel_norm:
            x = (x - self.pixel_mean) / self.pixel_std
        feats, pos = self.neck(self.run_trunk(x))
        emb = feats[2]                                       # stride 16 (feats[3], stride 32, is dropped)
        if self.no_mem_embed is not None:
            emb = emb + self.no_mem_embed.view(1, -1, 1, 1)
        return ImageFeatures(emb, (feats[0], feats[1]), pos[2])

    # -- training -----------------------------------------------------------------------------
    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each Hiera block in backward instead of keeping its activations."""
        self.checkpoint_blocks = enabled

    def default_trainable(self) -> list[str]:
        return [n for n, _ in self.named_parameters()]

    def sites(self) -> dict[str, Site]:
        """Per Hiera block N: ``blocks.N.attn.qkv`` ("linear", in dim -> 3 x out dim; spatial = its window,
        or the grid for global blocks), ``blocks.N.attn.proj``, ``blocks.N.mlp`` and ``blocks.N`` ("bhwc")."""
        out: dict[str, Site] = {}
        grid = self.image_size // 4
        for i, blk in enumerate(self.trunk.blocks):
            after = grid // 2 if blk.q_stride else grid     # a stage's first block pools its queries
            ws = blk.window_size
            attn_grid = (ws, ws) if ws else (grid, grid)
            attn_out = (ws // 2, ws // 2) if ws and blk.q_stride else (attn_grid if ws else (after, after))
            d_in, d_out = int(blk.dim), int(blk.dim_out)
            out[f"blocks.{i}.attn.qkv"] = Site(f"blocks.{i}.attn.qkv", blk.attn.qkv, "linear", d_in, 3 * d_out,
                                               attn_grid)
            out[f"blocks.{i}.attn.proj"] = Site(f"blocks.{i}.attn.proj", blk.attn.proj, "bhwc", d_out, d_out,
                                                attn_out)
            out[f"blocks.{i}.mlp"] = Site(f"blocks.{i}.mlp", blk.mlp, "bhwc", d_out, d_out, (after, after))
            out[f"blocks.{i}"] = Site(f"blocks.{i}", blk, "bhwc", d_in, d_out, (after, after))
            grid = after
        return out

    # -- checkpoints --------------------------------------------------------------------------
    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """An official SAM2 file: ``no_mem_embed`` becomes this encoder's (image mode); the file's other
        memory keys are dropped in image mode and left to the temporal module otherwise. Encoder keys
        (``image_encoder.trunk.*``, ``.neck.*``) are samfx's names already. In video mode an image-mode
        file's ``<prefix>no_mem_embed`` goes back to SAM2's top-level name, which the memory claims, so a
        per-frame SAM2 run starts a video recipe as an official file does."""
        if self.no_mem_embed is None:
            if prefix + NO_MEM_EMBED in state and NO_MEM_EMBED not in state:
                return {(NO_MEM_EMBED if k == prefix + NO_MEM_EMBED else k): v for k, v in state.items()}
            return state
        out: dict[str, Tensor] = {}
        for k, v in state.items():
            if k == NO_MEM_EMBED:
                out[prefix + NO_MEM_EMBED] = v
            elif not is_memory_key(k):
                out[k] = v
        return out

    def export_foreign_state(self, fmt: str, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """SAM2's layout: ``no_mem_embed`` back at the top level; the encoder's other names are SAM2's."""
        if fmt != "sam2" or prefix + NO_MEM_EMBED not in state:
            return state
        return {(NO_MEM_EMBED if k == prefix + NO_MEM_EMBED else k): v for k, v in state.items()}

def build_sam2_encoder(cfg: Sam2EncoderConfig, ctx: BuildContext) -> Sam2ImageEncoder:
    enc = Sam2ImageEncoder(cfg.size, cfg.image_size, cfg.pixel_norm, cfg.no_memory_embed, cfg.drop_path_rate)
    ctx.high_res_dims = enc.high_res_dims
    return enc
