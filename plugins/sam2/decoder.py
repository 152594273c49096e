"""SAM2's prompt encoder and mask decoder as samfx components (parameter names exactly SAM2's).

The mask decoder is SAM2's with ``use_high_res_features``: it projects the encoder's stride-8 and
stride-4 levels (``ImageFeatures.high_res``) with its own ``conv_s1`` / ``conv_s0`` (SAM2Base does that
once per image in ``forward_image``; the result is the same) and adds them while upscaling. K queries
per image share the image's features without copies (SAM2's ``repeat_image``). Output selection is
SAM2's: the multimask tokens 1..3, or token 0, which in eval falls back to the best multimask output
when its stability score is low (``dynamic_multimask_via_stability``, build_sam2's default); the mask
tokens returned (object pointers) are the three multimask tokens with ``multimask``, else token 0.
On a clip frame (``DecoderInput.frame`` set) with ``multimask_tracking`` and a point count in
[multimask_min_points, multimask_max_points] (SAM2.1: 0..1, so every unprompted frame and a single click),
the three multimask outputs are decoded and the one with the best predicted IoU is returned as the single
mask (Q,1,...), with its IoU and its token (the object pointer), as SAM2Base._forward_sam_heads does.
Images (``frame`` None) are never affected.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samfx.contracts.errors import RecipeError, SamfxError
from samfx.contracts.interfaces import (
    BuildContext,
    DecoderInput,
    DecoderOutput,
    MaskDecoderBase,
    PromptEncoderBase,
    add_per_image,
)
from samfx_plugins.sam2.config import NO_OBJ_SCORE, Sam2MaskDecoderConfig, Sam2PromptEncoderConfig
from samfx_plugins.sam2.deps import require_sam2
from samfx_plugins.sam2.keys import MASK_DECODER, PROMPT_ENCODER, rename_prefix

require_sam2()

from sam2.modeling.sam.mask_decoder import MaskDecoder  # noqa: E402
from sam2.modeling.sam.prompt_encoder import PromptEncoder  # noqa: E402
from sam2.modeling.sam.transformer import TwoWayTransformer  # noqa: E402


class Sam2PromptEncoder(PromptEncoder, PromptEncoderBase):
    """sam2's PromptEncoder with the geometry of the model it is built into. Box corners are points with
    labels 2 and 3 in SAM2; ``boxes`` (Q,4) are embedded the same way. Without points or box, one empty
    point (label -1) and the pad point are embedded, as SAM2Base does (``empty_point``)."""

    no_mask_embed: nn.Embedding  # set by sam2's PromptEncoder (untyped)

    def __init__(self, embed_dim: int, embed_size: tuple[int, int], image_size: int, mask_in_chans: int = 16,
                 empty_point: bool = True):
        super().__init__(embed_dim=embed_dim, image_embedding_size=tuple(embed_size),
                         input_image_size=(image_size, image_size), mask_in_chans=mask_in_chans)
        self.empty_point = empty_point

    def get_dense_pe(self) -> Tensor:
        """SAM2's dense positional encoding, in fp32 also under autocast."""
        with torch.autocast(self.no_mask_embed.weight.device.type, enabled=False):
            return super().get_dense_pe()

    def forward(self, points: tuple[Tensor, Tensor] | None = None, boxes: Tensor | None = None,
                masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if points is None and boxes is None and self.empty_point:
            # SAM2Base._forward_sam_heads without points: one point at (0,0) with label -1 (+ the pad point)
            n = masks.shape[0] if masks is not None else 1
            dev = self.no_mask_embed.weight.device
            points = (torch.zeros(n, 1, 2, device=dev), -torch.ones(n, 1, dtype=torch.int32, device=dev))
        if points is not None:
            coords, labels = points
            with torch.autocast(coords.device.type, enabled=False):  # sin/cos of pixel coordinates in fp32
                return super().forward(points=(coords.float(), labels), boxes=boxes, masks=masks)
        return super().forward(points=None, boxes=boxes, masks=masks)

    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """An official SAM2 file's ``sam_prompt_encoder.*`` keys are this component's."""
        return rename_prefix(state, PROMPT_ENCODER, prefix)

    def export_foreign_state(self, fmt: str, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        return rename_prefix(state, prefix, PROMPT_ENCODER) if fmt == "sam2" else state


class Sam2MaskDecoder(MaskDecoder, MaskDecoderBase):
    """SAM2's MaskDecoder over a :class:`DecoderInput`: each query decoded with its own prompt set."""

    # set by sam2's MaskDecoder (untyped)
    iou_token: nn.Embedding
    mask_tokens: nn.Embedding
    obj_score_token: nn.Embedding
    transformer: nn.Module
    output_upscaling: nn.Sequential
    output_hypernetworks_mlps: nn.ModuleList
    iou_prediction_head: nn.Module
    pred_obj_score_head: nn.Module
    conv_s0: nn.Conv2d
    conv_s1: nn.Conv2d
    num_mask_tokens: int
    pred_obj_scores: bool
    use_multimask_token_for_obj_ptr: bool
    dynamic_multimask_via_stability: bool
    _dynamic_multimask_via_stability: Any
    gate_by_object_score: bool = False
    multimask_tracking: bool = False     # set by build_mask_decoder (Sam2MaskDecoderConfig)
    multimask_min_points: int = 0
    multimask_max_points: int = 1

    def output_tokens(self) -> Tensor:
        """(object-score token,) IoU token and the four mask tokens, in SAM2's order."""
        tokens = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            tokens.insert(0, self.obj_score_token.weight)
        return torch.cat(tokens, dim=0)

    def tracks_multimask(self, inp: DecoderInput) -> bool:
        """SAM2Base._use_multimask on a clip frame (multimask_output_for_tracking): three masks, the best
        kept, when the frame's point count per query is in [multimask_min_points, multimask_max_points]."""
        return (inp.frame is not None and not inp.multimask and self.multimask_tracking
                and self.multimask_min_points <= inp.num_points <= self.multimask_max_points)

    def forward(self, inp: DecoderInput) -> DecoderOutput:
        inp.check("sam2")
        sparse, dense, k = inp.sparse, inp.dense, inp.queries_per_image
        emb = inp.features.embedding
        q, (_, c, h, w) = sparse.shape[0], emb.shape
        if len(inp.features.high_res) != 2:
            raise SamfxError(f"mask_decoder 'sam2': needs the encoder's stride-4 and stride-8 features "
                             f"(ImageFeatures.high_res), got {len(inp.features.high_res)} levels; use "
                             f"image_encoder 'sam2'")
        s = 1 if self.pred_obj_scores else 0
        tokens = torch.cat([self.output_tokens().unsqueeze(0).expand(q, -1, -1).to(sparse.dtype), sparse], dim=1)
        src = add_per_image(dense, emb, k)
        hs, src = self.transformer(src, inp.image_pe, tokens)     # broadcasts image_pe (1,C,h,w)
        iou_out, mask_out = hs[:, s], hs[:, s + 1:s + 1 + self.num_mask_tokens]

        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        hr0, hr1 = inp.features.high_res
        up = act1(ln1(add_per_image(dc1(src.transpose(1, 2).reshape(q, c, h, w)), self.conv_s1(hr1), k)))
        up = act2(add_per_image(dc2(up), self.conv_s0(hr0), k))
        tracking = self.tracks_multimask(inp)
        multimask = inp.multimask or tracking
        masks, iou, tokens_out = self._select(up, iou_out, mask_out, multimask)
        if tracking:  # SAM2Base._forward_sam_heads: the mask (and token) with the best predicted IoU
            best = iou.argmax(-1)
            rows = torch.arange(q, device=best.device)
            masks, iou = masks[rows, best].unsqueeze(1), iou[rows, best].unsqueeze(1)
            tokens_out = tokens_out[rows, best].unsqueeze(1) if tokens_out.shape[1] > 1 else tokens_out
        if self.pred_obj_scores:
            score = self.pred_obj_score_head(hs[:, 0])
        else:
            score = 10.0 * iou.new_ones(q, 1)   # SAM2: object always present
        if self.gate_by_object_score and not self.training:
            masks = torch.where(score[:, :, None, None] > 0, masks, NO_OBJ_SCORE)
        return DecoderOutput(masks, iou, mask_tokens=tokens_out, object_score=score)

    def _select(self, up: Tensor, iou_out: Tensor, mask_out: Tensor, multimask: bool) -> tuple[Tensor, Tensor, Tensor]:
        """SAM2's MaskDecoder output selection: (masks, iou, mask tokens) of tokens 1..3 (multimask), or of
        token 0, which in eval falls back to the best multimask output when it is unstable."""
        q, c8, uh, uw = up.shape
        dynamic = not multimask and self.dynamic_multimask_via_stability and not self.training
        picked = range(1, self.num_mask_tokens) if multimask else range(self.num_mask_tokens if dynamic else 1)
        hyper = torch.stack([self.output_hypernetworks_mlps[i](mask_out[:, i]) for i in picked], dim=1)
        masks = (hyper @ up.reshape(q, c8, uh * uw)).reshape(q, len(picked), uh, uw)
        iou = self.iou_prediction_head(iou_out)
        if multimask:
            iou = iou[:, 1:]
        elif dynamic:
            masks, iou = self._dynamic_multimask_via_stability(masks, iou)
        else:
            iou = iou[:, 0:1]
        if multimask and self.use_multimask_token_for_obj_ptr:
            return masks, iou, mask_out[:, 1:]
        return masks, iou, mask_out[:, 0:1]

    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """An official SAM2 file's ``sam_mask_decoder.*`` keys are this component's."""
        return rename_prefix(state, MASK_DECODER, prefix)

    def export_foreign_state(self, fmt: str, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        return rename_prefix(state, prefix, MASK_DECODER) if fmt == "sam2" else state


def build_prompt_encoder(cfg: Sam2PromptEncoderConfig, ctx: BuildContext) -> Sam2PromptEncoder:
    return Sam2PromptEncoder(ctx.embed_dim, ctx.embed_size, ctx.image_size, cfg.mask_in_chans, cfg.empty_point)


def build_mask_decoder(cfg: Sam2MaskDecoderConfig, ctx: BuildContext) -> Sam2MaskDecoder:
    if tuple(ctx.high_res_dims) != (ctx.embed_dim, ctx.embed_dim):
        raise SamfxError(f"mask_decoder 'sam2': needs an encoder with two high-res levels of {ctx.embed_dim} "
                         f"channels (image_encoder 'sam2'), this one has {tuple(ctx.high_res_dims) or 'none'}")
    transformer = TwoWayTransformer(depth=cfg.transformer_depth, embedding_dim=ctx.embed_dim, mlp_dim=cfg.mlp_dim,
                                    num_heads=cfg.num_heads)
    decoder = Sam2MaskDecoder(
        transformer_dim=ctx.embed_dim, transformer=transformer, num_multimask_outputs=3, iou_head_depth=3,
        iou_head_hidden_dim=256, use_high_res_features=True,
        iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid, pred_obj_scores=cfg.pred_obj_scores,
        pred_obj_scores_mlp=cfg.pred_obj_scores, use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
        dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=cfg.stability_delta,
        dynamic_multimask_stability_thresh=cfg.stability_thresh)
    decoder.gate_by_object_score = cfg.gate_by_object_score
    if cfg.multimask_min_points > cfg.multimask_max_points:
        raise RecipeError(f"model.mask_decoder.multimask_min_points ({cfg.multimask_min_points}) is above "
                          f"multimask_max_points ({cfg.multimask_max_points}); SAM2.1 uses 0 and 1")
    decoder.multimask_tracking = cfg.multimask_tracking
    decoder.multimask_min_points, decoder.multimask_max_points = cfg.multimask_min_points, cfg.multimask_max_points
    return decoder
