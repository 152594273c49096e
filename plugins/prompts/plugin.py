"""Simulated prompts from ground truth: clicks and boxes (train: random, eval: deterministic), the whole
mask (`masks`, the given first frame of a sequence), `none` (SAM's learned no-mask embedding only), and
tracking by prompting from the previous frame's prediction (`prev_mask`, `prev_box`)."""
from samfx import hookimpl
from samfx_plugins.prompts.config import BoxesConfig, ClicksConfig, MasksConfig, NoPromptConfig, PreviousConfig


@hookimpl
def samfx_register(registry):
    registry.add("prompt_generator", "clicks", "samfx_plugins.prompts.simulated:build_clicks",
                 schema=ClicksConfig,
                 description="Clicks from the target: random foreground pixel in training (background "
                             "click if empty), the deepest interior pixel at eval.")
    registry.add("prompt_generator", "boxes", "samfx_plugins.prompts.simulated:build_boxes",
                 schema=BoxesConfig,
                 description="Bounding box of the target, jittered in training, exact at eval.")
    registry.add("prompt_generator", "masks", "samfx_plugins.prompts.simulated:build_masks",
                 schema=MasksConfig,
                 description="The target mask, given: the output of the frames it prompts (frame 0 of a "
                             "sequence, semi-supervised; SAM2's add_new_mask). Sequences only.")
    registry.add("prompt_generator", "none", "samfx_plugins.prompts.simulated:build_none",
                 schema=NoPromptConfig,
                 description="No prompt: empty sparse set and the no-mask dense embedding.")
    registry.add("prompt_generator", "prev_mask", "samfx_plugins.prompts.previous:build_prev_mask",
                 schema=PreviousConfig,
                 description="Tracking by prompting: the previous frame's mask logits as the dense prompt; "
                             "the first frame by clicks, a box or the given mask.")
    registry.add("prompt_generator", "prev_box", "samfx_plugins.prompts.previous:build_prev_box",
                 schema=PreviousConfig,
                 description="Tracking by prompting: the box of the previous frame's mask; the first "
                             "frame by clicks, a box or the given mask.")
