"""Recipe schemas of the segmentation losses (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DiceBCEConfig:
    """The SAMUS authors' loss: 0.8 Dice + 0.2 BCE with pos_weight 2."""
    dice_weight: float = 0.8
    bce_weight: float = 0.2
    pos_weight: float = 2.0
    smooth: float = 1.0


@dataclass
class DiceMSEConfig:
    """The MSFF report's loss: Dice + MSE between probabilities and target."""
    dice_weight: float = 1.0
    mse_weight: float = 1.0
    smooth: float = 1.0


@dataclass
class DiceConfig:
    smooth: float = 1.0


@dataclass
class BCEConfig:
    pos_weight: float = 1.0
