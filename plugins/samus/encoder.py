"""The SAMUS image encoder: SAM's ViT at 256² with overlapping patches, a position adapter, feature
adapters, a parallel CNN branch and cross-branch attention (as in the authors' code).

Parameter names: SAM's for everything SAM has (``patch_embed``, ``pos_embed``, ``blocks.N.{norm1,
attn,norm2,mlp}``, ``neck``); SAMUS's additions are ``cnn.*``, ``pos_adapter.*``, ``input_adapter.*``
and, in each global block, ``blocks.N.{cba,refine,mlp_adapter}.*``. ``convert_state_dict`` reads
official SAM files, the SAMUS authors' layout (see ``keys.py``) and samfx's own.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Block, PatchEmbed
from torch import Tensor, nn

from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import BuildContext, ImageFeatures, Site
from samfx_plugins.sam.config import PROMPT_DIM
from samfx_plugins.sam.encoder import SamViTBase, fit_geometry, size_preset, vit_kwargs
from samfx_plugins.sam.fast import set_fast_path
from samfx_plugins.samus.config import CNN_WIDTHS, DEFAULT_CNN_WIDTHS, IMAGE_SIZES, SamusEncoderConfig
from samfx_plugins.samus.keys import from_authors, is_authors_layout, to_authors

SAM_POS_GRID = 64  # SAM's pos_embed is (1,64,64,d) (1024² / 16), kept and pooled by the position adapter


class ConvNormAct(nn.Module):
    """[MaxPool2d(2)] -> Conv3x3 (no bias) -> LayerNorm2d -> GELU, on (B,C,H,W)."""

    def __init__(self, cin: int, cout: int, pool: bool = False):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
        self.norm = LayerNorm2d(cout)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(self.pool(x))))


class FeatureAdapter(nn.Module):
    """A(x) = GELU(x E_d) E_u with E_d: d -> d/4; returns x + A(x) when ``skip``."""

    def __init__(self, dim: int, skip: bool):
        super().__init__()
        self.skip = skip
        self.down = nn.Linear(dim, dim // 4)
        self.up = nn.Linear(dim // 4, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        a = self.up(self.act(self.down(x)))
        return x + a if self.skip else a


class CrossAttention(nn.Module):
    """Cross-branch attention: ViT tokens (B,h,w,d) query CNN tokens (B,h',w',d); q/k/v/out Linear."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        b, h, w, d = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, -1, self.num_heads, d // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(y)), heads(self.v(y)))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, d))


class CnnBranch(nn.Module):
    """Conv stem at S² then three MaxPool-Conv stages: (B,3,S,S) -> (B,d,S/8,S/8).

    ``out`` is an identity whose output is the branch output (the ``cnn.out`` adapter site).
    """

    def __init__(self, widths: tuple[int, int, int], dim: int):
        super().__init__()
        w0, w1, w2 = widths
        self.stage0 = ConvNormAct(3, w0)
        self.stage1 = ConvNormAct(w0, w1, pool=True)
        self.stage2 = ConvNormAct(w1, w2, pool=True)
        self.stage3 = ConvNormAct(w2, dim, pool=True)
        self.out = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.stage3(self.stage2(self.stage1(self.stage0(x)))))


class SamusGlobalBlock(Block):
    """A global-attention SAM block with SAMUS's additions.

    ``forward(x, c)``: x̂ = norm1(x); x̂ = x̂ + CBA(x̂, c); x = x + attn(x̂);
    x = x + mlp(norm2(x)) + 0.5·mlp_adapter(norm2(x)). The encoder then refines c with ``refine``
    (kept out of forward so the block returns only tokens, like every ``blocks.N`` site).
    """

    def __init__(self, dim: int, num_heads: int, **kwargs):
        super().__init__(dim, num_heads, window_size=0, **kwargs)
        self.cba = CrossAttention(dim, num_heads)
        self.refine = ConvNormAct(dim, dim)
        self.mlp_adapter = FeatureAdapter(dim, skip=False)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:  # x (B,h,w,d), c (B,d,h,w)
        xn = self.norm1(x)
        xn = xn + self.cba(xn, c.permute(0, 2, 3, 1))
        x = x + self.attn(xn)
        n2 = self.norm2(x)
        return torch.add(x + self.mlp(n2), self.mlp_adapter(n2), alpha=0.5)


class SamusImageEncoder(SamViTBase):
    """SAMUS image encoder: images (B,3,S,S) in [0,1] -> ImageFeatures with embedding (B,256,S/8,S/8).

    ``default_trainable()`` is the paper's set: CNN branch, position adapter, all adapters, CBA and
    refine convs, and the global blocks' rel-pos tables; SAM's weights stay frozen.
    """

    def __init__(self, size: str = "vit_b", image_size: int = 256, fast_attention: bool = True,
                 pixel_norm: bool = False, out_dim: int = PROMPT_DIM):
        preset = size_preset(size, "samus")
        if image_size not in IMAGE_SIZES:
            raise RecipeError(f"image_encoder 'samus': image_size must be one of {', '.join(map(str, IMAGE_SIZES))} "
                              f"(S/8 tokens pool SAM's 64x64 position grid), got {image_size}; SAMUS uses 256")
        kwargs = vit_kwargs(preset, out_dim)
        depth, dim, heads = kwargs.pop("depth"), preset["embed_dim"], preset["num_heads"]
        tokens = image_size // 8
        # SAM's encoder without blocks and without pos_embed; both are re-created below at SAMUS's shapes.
        super().__init__(img_size=image_size, patch_size=8, depth=0, use_abs_pos=False, **kwargs)
        self._setup("samus", size, image_size, tokens, pixel_norm)
        self.patch_embed = PatchEmbed(kernel_size=(16, 16), stride=(8, 8), in_chans=3, embed_dim=dim)
        # SAM zero-initialises pos_embed (always overwritten by its checkpoint). Here it is frozen and
        # feeds the trainable position adapter, which would get no gradient from zeros without a checkpoint.
        self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, SAM_POS_GRID, SAM_POS_GRID, dim), std=0.02))
        block_kw = dict(mlp_ratio=4, qkv_bias=True, norm_layer=kwargs["norm_layer"], use_rel_pos=True,
                        input_size=(tokens, tokens))
        for i in range(depth):
            if i in self.global_attn_indexes:
                self.blocks.append(SamusGlobalBlock(dim, heads, **block_kw))
            else:
                self.blocks.append(Block(dim, heads, window_size=self.window_size, **block_kw))
        n_down = int(math.log2(SAM_POS_GRID // tokens))
        self.pos_adapter = nn.Sequential(*[ConvNormAct(dim, dim, pool=True) for _ in range(n_down)])
        self.input_adapter = FeatureAdapter(dim, skip=True)
        self.cnn_widths = CNN_WIDTHS.get(size, DEFAULT_CNN_WIDTHS)
        self.cnn = CnnBranch(self.cnn_widths, dim)
        self._pos_cache: tuple[tuple, Tensor] | None = None
        set_fast_path(self, fast_attention)

    def position_embedding(self) -> Tensor:
        """(1,h,w,d) = position adapter(SAM's pos_embed); cached while gradients are off.

        Under ``torch.compile`` it is computed in the graph (the cache key reads data pointers,
        which would break the graph; one adapter pass per batch is <1% of a vit_b forward).
        """
        def adapted() -> Tensor:
            return self.pos_adapter(self.pos_embed.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

        if torch.compiler.is_compiling():
            return adapted()
        if torch.is_grad_enabled():
            self._pos_cache = None
            return adapted()
        params = [self.pos_embed, *self.pos_adapter.parameters()]
        dev = self.pos_embed.device.type
        key = (tuple((p.data_ptr(), p._version) for p in params), torch.is_autocast_enabled(dev),
               torch.get_autocast_dtype(dev))
        if self._pos_cache is None or self._pos_cache[0] != key:
            self._pos_cache = (key, adapted())
        return self._pos_cache[1]

    def forward(self, x: Tensor) -> ImageFeatures:
        self.check_input(x)
        x = self.normalize(x)
        c = self.cnn(x)                                                  # (B,d,h,w)
        s = self.image_size + 8                                          # k16 s8 on S+8 -> S/8 tokens
        t = self.patch_embed(F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False))
        t = self.input_adapter(t) + self.position_embedding()
        for blk in self.blocks:
            if isinstance(blk, SamusGlobalBlock):
                t = self.run_block(blk, t, c)
                c = self.run_block(blk.refine, c)
            else:
                t = self.run_block(blk, t)
        t = torch.add(t, c.permute(0, 2, 3, 1), alpha=0.5)
        return ImageFeatures(self.neck(t.permute(0, 3, 1, 2)))

    # -- samfx contract ------------------------------------------------------------------------
    def sites(self) -> dict[str, Site]:
        s, d = self.image_size, self.encoder_dim
        w0, w1, w2 = self.cnn_widths
        out = {
            "cnn.stage0": Site("cnn.stage0", self.cnn.stage0, "bchw", 3, w0, (s, s)),
            "cnn.stage1": Site("cnn.stage1", self.cnn.stage1, "bchw", w0, w1, (s // 2, s // 2)),
            "cnn.stage2": Site("cnn.stage2", self.cnn.stage2, "bchw", w1, w2, (s // 4, s // 4)),
            "cnn.stage3": Site("cnn.stage3", self.cnn.stage3, "bchw", w2, d, self.embed_size),
            "cnn.out": Site("cnn.out", self.cnn.out, "bchw", d, d, self.embed_size),
        }
        out.update(super().sites())
        return out

    def new_parameter_prefixes(self) -> list[str]:
        out = ["cnn.", "pos_adapter.", "input_adapter."]
        for g in self.global_attn_indexes:
            out += [f"blocks.{g}.cba.", f"blocks.{g}.refine.", f"blocks.{g}.mlp_adapter."]
        return out

    def default_trainable(self) -> list[str]:
        prefixes = tuple(self.new_parameter_prefixes())
        rel_pos = {f"blocks.{g}.attn.rel_pos_{a}" for g in self.global_attn_indexes for a in "hw"}
        return [n for n, _ in self.named_parameters() if n.startswith(prefixes) or n in rel_pos]

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Official SAM (rel-pos resized per block), SAMUS authors' layout (key map) or samfx's own."""
        if is_authors_layout(state):
            state = from_authors(state)
        return fit_geometry(state, self)

    def export_foreign_state(self, fmt: str, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """``authors``: the encoder's keys in the SAMUS authors' layout (samfx/loading maps them back)."""
        if fmt != "authors":
            return state
        mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        out = {k: v for k, v in state.items() if not k.startswith(prefix)}
        out.update({prefix + k: v for k, v in to_authors(mine).items()})
        return out


def build_samus_encoder(cfg: SamusEncoderConfig, ctx: BuildContext) -> SamusImageEncoder:
    ctx.fast_attention = cfg.fast_attention
    return SamusImageEncoder(cfg.size, cfg.image_size, cfg.fast_attention, cfg.pixel_norm, cfg.out_dim)
