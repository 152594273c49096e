"""SAM's prompt encoder and mask decoder as samfx components (parameter names exactly SAM's).

The mask decoder is batched one prompt set per query, K queries per image sharing its features
(segment-anything's ``predict_masks`` repeats each image embedding once per prompt set, which is
right for one image with many prompts and wrong for B images with B prompt sets.)
"""
from __future__ import annotations

from typing import Any

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import Tensor, nn

from samfx.contracts.interfaces import (
    BuildContext,
    DecoderInput,
    DecoderOutput,
    MaskDecoderBase,
    PromptEncoderBase,
    add_per_image,
)
from samfx_plugins.sam.config import SamMaskDecoderConfig, SamPromptEncoderConfig
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
    """SAM's MaskDecoder over a :class:`DecoderInput`: each query decoded with its own prompt set.

    Single-mask output from SAM's first mask token, or its three multimask tokens (``multimask``).
    """

    # set by segment_anything's MaskDecoder (untyped)
    iou_token: nn.Embedding
    mask_tokens: nn.Embedding
    transformer: nn.Module
    output_upscaling: nn.Sequential
    output_hypernetworks_mlps: nn.ModuleList
    iou_prediction_head: nn.Module
    num_mask_tokens: int

    def output_tokens(self) -> Tensor:
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def forward(self, inp: DecoderInput) -> DecoderOutput:
        inp.check("sam")
        sparse, emb = inp.sparse, inp.features.embedding
        q, (_, c, h, w) = sparse.shape[0], emb.shape
        tokens = torch.cat([self.output_tokens().unsqueeze(0).expand(q, -1, -1).to(sparse.dtype), sparse], dim=1)
        src = add_per_image(inp.dense, emb, inp.queries_per_image)   # features shared by an image's queries
        hs, src = self.transformer(src, inp.image_pe, tokens)   # broadcasts image_pe (1,C,h,w)
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(q, c, h, w))
        first, count = (1, self.num_mask_tokens - 1) if inp.multimask else (0, 1)
        hyper = torch.stack([self.output_hypernetworks_mlps[first + i](hs[:, 1 + first + i])
                             for i in range(count)], dim=1)                  # (Q,M,C/8)
        _, c8, uh, uw = upscaled.shape
        masks = (hyper @ upscaled.reshape(q, c8, uh * uw)).reshape(q, count, uh, uw)
        iou = self.iou_prediction_head(hs[:, 0])[:, first:first + count]
        return DecoderOutput(masks, iou, mask_tokens=hs[:, 1 + first:1 + first + count])


def build_prompt_encoder(cfg: SamPromptEncoderConfig, ctx: BuildContext) -> SamPromptEncoder:
    enc = SamPromptEncoder(ctx.embed_dim, ctx.embed_size, ctx.image_size, cfg.mask_in_chans)
    set_fast_path(enc, ctx.fast_attention)
    return enc


def build_mask_decoder(cfg: SamMaskDecoderConfig, ctx: BuildContext) -> SamMaskDecoder:
    transformer = TwoWayTransformer(depth=cfg.transformer_depth, embedding_dim=ctx.embed_dim,
                                    mlp_dim=cfg.mlp_dim, num_heads=cfg.num_heads)
    dec = SamMaskDecoder(transformer_dim=ctx.embed_dim, transformer=transformer, num_multimask_outputs=3,
                         iou_head_depth=3, iou_head_hidden_dim=256)
    set_fast_path(dec, ctx.fast_attention)  # follows the encoder's fast_attention
    return dec
