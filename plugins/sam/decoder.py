"""SAM's prompt encoder and mask decoder as samfx components (parameter names exactly SAM's).

The mask decoder is batched one prompt set per image: image b is decoded with prompt set b.
(segment-anything's ``predict_masks`` repeats each image embedding once per prompt set, which is
right for one image with many prompts and wrong for B images with B prompt sets.)
"""
from __future__ import annotations

from typing import Any

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import Tensor, nn

from samfx.errors import SamfxError
from samfx.interfaces import BuildContext, MaskDecoderBase, PromptEncoderBase
from samfx_plugins.sam.config import SamMaskDecoderConfig, SamPromptEncoderConfig
from samfx_plugins.sam.encoder import FAST_PATH_KEY
from samfx_plugins.sam.fast import set_fast_path


class SamPromptEncoder(PromptEncoder, PromptEncoderBase):
    """segment-anything's PromptEncoder with the geometry of the model it is built into."""

    # set by segment_anything's PromptEncoder (untyped)
    input_image_size: tuple[int, int]
    pe_layer: Any
    no_mask_embed: nn.Embedding
    not_a_point_embed: nn.Embedding
    point_embeddings: Any  # nn.ModuleList of nn.Embedding, indexed

    def __init__(self, embed_dim: int, embed_size: tuple[int, int], image_size: int, mask_in_chans: int = 16):
        super().__init__(embed_dim=embed_dim, image_embedding_size=tuple(embed_size),
                         input_image_size=(image_size, image_size), mask_in_chans=mask_in_chans)

    def get_dense_pe(self) -> Tensor:
        """SAM's dense positional encoding, in fp32 also under autocast (sin/cos of bf16 angles of
        up to ~±40 rad would be off by a few hundredths)."""
        with torch.autocast(self.no_mask_embed.weight.device.type, enabled=False):
            return super().get_dense_pe()

    def _embed_points(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        """segment-anything's point embedding with ``torch.where`` instead of boolean-mask indexing
        (same values: adding a zero is exact), which ``torch.compile`` traces without graph breaks;
        the positional encoding in fp32 as in :meth:`get_dense_pe`."""
        points = points.float() + 0.5  # pixel centres
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        with torch.autocast(points.device.type, enabled=False):
            emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        lab = labels[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight, emb)
        emb = emb + torch.where(lab == 0, self.point_embeddings[0].weight, 0.0)
        return emb + torch.where(lab == 1, self.point_embeddings[1].weight, 0.0)


class SamMaskDecoder(MaskDecoder, MaskDecoderBase):
    """SAM's MaskDecoder; ``forward`` decodes B images with B prompt sets into one mask each.

    Returns ``(low_res_logits (B,1,4h,4w), iou_pred (B,1))`` from SAM's first (single-mask) token.
    """

    # set by segment_anything's MaskDecoder (untyped)
    iou_token: nn.Embedding
    mask_tokens: nn.Embedding
    transformer: nn.Module
    output_upscaling: nn.Sequential
    output_hypernetworks_mlps: nn.ModuleList
    iou_prediction_head: nn.Module

    def output_tokens(self) -> Tensor:
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def forward(self, image_embedding: Tensor, image_pe: Tensor, sparse: Tensor,
                dense: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = image_embedding.shape
        if sparse.shape[0] != b or dense.shape[0] != b:
            raise SamfxError(f"mask_decoder 'sam': one prompt set per image expected, got {b} images, "
                             f"{sparse.shape[0]} sparse and {dense.shape[0]} dense prompt sets")
        tokens = torch.cat([self.output_tokens().unsqueeze(0).expand(b, -1, -1).to(sparse.dtype), sparse], dim=1)
        # The transformer broadcasts image_pe (1,C,h,w) over the batch.
        hs, src = self.transformer(image_embedding + dense, image_pe, tokens)
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = self.output_hypernetworks_mlps[0](hs[:, 1])                   # (B,C/8): mask token 0
        _, c8, uh, uw = upscaled.shape
        masks = (hyper.unsqueeze(1) @ upscaled.reshape(b, c8, uh * uw)).reshape(b, 1, uh, uw)
        iou = self.iou_prediction_head(hs[:, 0])[:, :1]
        return masks, iou


def build_prompt_encoder(cfg: SamPromptEncoderConfig, ctx: BuildContext) -> SamPromptEncoder:
    enc = SamPromptEncoder(ctx.embed_dim, ctx.embed_size, ctx.image_size, cfg.mask_in_chans)
    set_fast_path(enc, ctx.extra.get(FAST_PATH_KEY, True))
    return enc


def build_mask_decoder(cfg: SamMaskDecoderConfig, ctx: BuildContext) -> SamMaskDecoder:
    transformer = TwoWayTransformer(depth=cfg.transformer_depth, embedding_dim=ctx.embed_dim,
                                    mlp_dim=cfg.mlp_dim, num_heads=cfg.num_heads)
    dec = SamMaskDecoder(transformer_dim=ctx.embed_dim, transformer=transformer, num_multimask_outputs=3,
                         iou_head_depth=3, iou_head_hidden_dim=256)
    set_fast_path(dec, ctx.extra.get(FAST_PATH_KEY, True))  # follows the encoder's fast_attention
    return dec
