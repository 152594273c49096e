"""Recipe schemas and size presets of the `sam2` plugin (torch-free: imported by plugin.py)."""
from __future__ import annotations

from dataclasses import dataclass

from samfx.contracts.bounds import bounded

# Hiera trunks of the SAM2.1 configs (sam2/configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml). Every size has
# the FPN neck with d_model 256 over the four stages (nearest top-down on levels 2, 3) and scalp 1.
HIERA: dict[str, dict] = {
    "tiny": {"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 7, 2), "global_att_blocks": (5, 7, 9),
             "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 14, 7)},
    "small": {"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 11, 2), "global_att_blocks": (7, 10, 13),
              "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 14, 7)},
    "base_plus": {"embed_dim": 112, "num_heads": 2, "stages": (2, 3, 16, 3), "global_att_blocks": (12, 16, 20),
                  "window_pos_embed_bkg_spatial_size": (14, 14), "window_spec": (8, 4, 14, 7)},
    "large": {"embed_dim": 144, "num_heads": 2, "stages": (2, 6, 36, 4), "global_att_blocks": (23, 33, 43),
              "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 16, 8)},
}
# The sam2 package's config file of each size (tests build the package's own model from it).
PACKAGE_CONFIGS = {"tiny": "configs/sam2.1/sam2.1_hiera_t.yaml", "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
                   "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml", "large": "configs/sam2.1/sam2.1_hiera_l.yaml"}
SAM2_DIM = 256  # d_model of the neck = prompt / decoder width in every SAM2 config
NO_OBJ_SCORE = -1024.0  # SAM2's logit for the pixels of an absent object (decoder gate, memory input)
INSTALL = "SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'sam2==1.1.0' (or `make setup`)"


@dataclass
class Sam2EncoderConfig:
    size: str = "tiny"             # tiny | small | base_plus | large (SAM2.1's Hiera trunks)
    image_size: int = 1024         # input side S, divisible by 32; embedding S/16, high-res S/4 and S/8
    pixel_norm: bool = True        # ImageNet mean/std on [0,1] inputs, as SAM2's transforms
    # Image mode (SAM2ImagePredictor): add the learned `no_mem_embed` to the stride-16 features and drop the
    # file's memory keys. Video recipes set false: the temporal module `sam2_memory` owns both.
    no_memory_embed: bool = True
    drop_path_rate: float = 0.0    # Hiera's stochastic depth (0 in SAM2.1's inference configs)


@dataclass
class Sam2PromptEncoderConfig:
    mask_in_chans: int = 16        # hidden channels of the dense (mask) prompt path, as in SAM2
    # No points and no box (unprompted video frames, prompt `none`): embed one empty point (label -1) plus
    # the pad point, as SAM2Base._forward_sam_heads (training and video); false: no sparse token at all,
    # as SAM2ImagePredictor.predict without prompts.
    empty_point: bool = True


@dataclass
class Sam2MaskDecoderConfig:
    transformer_depth: int = 2     # SAM2's two-way transformer
    mlp_dim: int = 2048
    num_heads: int = 8
    pred_obj_scores: bool = True   # object-score token and MLP head (SAM2.1)
    use_multimask_token_for_obj_ptr: bool = True
    iou_prediction_use_sigmoid: bool = True
    # In eval, a single-mask output whose stability score is below `stability_thresh` is replaced by the
    # best of the three multimask outputs (build_sam2's default post-processing; training never does it).
    dynamic_multimask_via_stability: bool = True
    stability_delta: float = 0.05
    stability_thresh: float = 0.98
    # In eval, pixels of a query whose object score is <= 0 get SAM2's "no object" logit (-1024), as
    # SAM2Base does when tracking (the video recipes turn it on). Training never gates: the mask would
    # get no gradient there and samfx has no object-score loss.
    gate_by_object_score: bool = False
    # SAM2.1's multimask tracking (SAM2Base._use_multimask with multimask_output_for_tracking): a clip frame
    # whose queries were given between multimask_min_points and multimask_max_points points (clicks; a box
    # counts 2; an unprompted frame 0) is decoded as three masks and the one with the best predicted IoU is
    # kept, with its token as the object pointer; the output is still one mask. Images (and false) keep the
    # single-mask output with the stability fallback above. Training: the loss sees the chosen mask (SAM2's
    # own training takes the smallest loss over the three instead).
    multimask_tracking: bool = True   # clip frames: SAM2.1's best of three masks by predicted IoU
    multimask_min_points: int = bounded(0, ge=0, note="SAM2.1: 0")  # fewest points per query for it
    multimask_max_points: int = bounded(1, ge=0, note="SAM2.1: 1")  # most points per query (a box counts 2)
