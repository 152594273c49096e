"""SAM's prompt encoder and mask decoder as samfx components (parameter names exactly SAM's).

The mask decoder is batched one prompt set per image: image b is decoded with prompt set b.
(segment-anything's ``predict_masks`` repeats each image embedding once per prompt set, which is
right for one image with many prompts and wrong for B images with B prompt sets.)
"""
from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import Tensor

from samfx.errors import SamfxError
from samfx.interfaces import BuildContext, MaskDecoderBase, PromptEncoderBase
from samfx_plugins.sam.config import SamMaskDecoderConfig, SamPromptEncoderConfig


class SamPromptEncoder(PromptEncoder, PromptEncoderBase):
    """segment-anything's PromptEncoder with the geometry of the model it is built into."""

    def __init__(self, embed_dim: int, embed_size: tuple[int, int], image_size: int, mask_in_chans: int = 16):
        super().__init__(embed_dim=embed_dim, image_embedding_size=tuple(embed_size),
                         input_image_size=(image_size, image_size), mask_in_chans=mask_in_chans)


class SamMaskDecoder(MaskDecoder, MaskDecoderBase):
    """SAM's MaskDecoder; ``forward`` decodes B images with B prompt sets into one mask each.

    Returns ``(low_res_logits (B,1,4h,4w), iou_pred (B,1))`` from SAM's first (single-mask) token.
    """

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
    return SamPromptEncoder(ctx.embed_dim, ctx.embed_size, ctx.image_size, cfg.mask_in_chans)


def build_mask_decoder(cfg: SamMaskDecoderConfig, ctx: BuildContext) -> SamMaskDecoder:
    transformer = TwoWayTransformer(depth=cfg.transformer_depth, embedding_dim=ctx.embed_dim,
                                    mlp_dim=cfg.mlp_dim, num_heads=cfg.num_heads)
    return SamMaskDecoder(transformer_dim=ctx.embed_dim, transformer=transformer, num_multimask_outputs=3,
                          iou_head_depth=3, iou_head_hidden_dim=256)
