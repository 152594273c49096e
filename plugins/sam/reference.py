"""segment-anything's own ``Sam`` at any samfx size preset, for checkpoint tests and offline demos.

``reference_sam("vit_b")`` has exactly ``segment_anything.sam_model_registry["vit_b"]()``'s
parameter names and shapes; ``reference_sam("tiny")`` is the same architecture at the tiny preset,
so its state dict is a small stand-in for an official SAM file.
"""
from __future__ import annotations

from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samfx_plugins.sam.config import PROMPT_DIM
from samfx_plugins.sam.encoder import PIXEL_MEAN, PIXEL_STD, size_preset, vit_kwargs


def reference_sam(size: str = "vit_b", image_size: int = 1024) -> Sam:
    """A randomly initialised segment-anything ``Sam`` (as ``build_sam``) at `size` and `image_size`."""
    grid = image_size // 16
    encoder = ImageEncoderViT(img_size=image_size, patch_size=16, **vit_kwargs(size_preset(size, "sam")))
    prompt = PromptEncoder(embed_dim=PROMPT_DIM, image_embedding_size=(grid, grid),
                           input_image_size=(image_size, image_size), mask_in_chans=16)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer_dim=PROMPT_DIM, iou_head_depth=3,
                          iou_head_hidden_dim=256,
                          transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048,
                                                        num_heads=8))
    return Sam(encoder, prompt, decoder, pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD))
