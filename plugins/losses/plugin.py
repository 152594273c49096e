"""Segmentation losses on (N,1,S,S) logits against binary targets."""
from samfx import hookimpl
from samfx_plugins.losses.config import BCEConfig, DiceBCEConfig, DiceConfig, DiceMSEConfig


@hookimpl
def samfx_register(registry):
    mod = "samfx_plugins.losses.losses"
    registry.add("loss", "dice_bce", f"{mod}:build_dice_bce", schema=DiceBCEConfig,
                 description="0.8 soft Dice + 0.2 BCE (pos_weight 2): the SAMUS authors' loss.")
    registry.add("loss", "dice_mse", f"{mod}:build_dice_mse", schema=DiceMSEConfig,
                 description="Soft Dice + MSE on probabilities: the MSFF report's loss.")
    registry.add("loss", "dice", f"{mod}:build_dice", schema=DiceConfig, description="Soft Dice loss.")
    registry.add("loss", "bce", f"{mod}:build_bce", schema=BCEConfig, description="Binary cross-entropy.")
