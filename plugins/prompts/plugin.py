"""Simulated prompts from ground truth: clicks and boxes (train: random, eval: deterministic), the whole
mask (`masks`, the given first frame of a sequence), and `none` (SAM's learned no-mask embedding only)."""
from samfx import hookimpl
from samfx_plugins.prompts.config import BoxesConfig, ClicksConfig, MasksConfig, NoPromptConfig


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
