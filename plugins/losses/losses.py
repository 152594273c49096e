"""Losses: ``forward(logits (N,1,H,W), targets (N,1,H,W) in {0,1}) -> scalar``.

Soft Dice is computed per query and averaged, with `smooth` added to numerator and denominator,
so an empty target predicted empty scores ~0 loss rather than NaN. Losses run in fp32 even
under autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from samfx.contracts.interfaces import Loss


def soft_dice_loss(logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    probs = torch.sigmoid(logits.float()).flatten(1)
    t = targets.float().flatten(1)
    inter = (probs * t).sum(1)
    dice = (2 * inter + smooth) / (probs.sum(1) + t.sum(1) + smooth)
    return 1 - dice.mean()


class DiceBCE(Loss):
    pos_weight: Tensor  # buffer

    def __init__(self, dice_weight: float, bce_weight: float, pos_weight: float, smooth: float):
        super().__init__()
        self.dice_weight, self.bce_weight, self.smooth = dice_weight, bce_weight, smooth
        self.register_buffer("pos_weight", torch.tensor([pos_weight]), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=self.pos_weight)
        return self.dice_weight * soft_dice_loss(logits, targets, self.smooth) + self.bce_weight * bce


class DiceMSE(Loss):
    def __init__(self, dice_weight: float, mse_weight: float, smooth: float):
        super().__init__()
        self.dice_weight, self.mse_weight, self.smooth = dice_weight, mse_weight, smooth

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        mse = F.mse_loss(torch.sigmoid(logits.float()), targets.float())
        return self.dice_weight * soft_dice_loss(logits, targets, self.smooth) + self.mse_weight * mse


class Dice(Loss):
    def __init__(self, smooth: float):
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return soft_dice_loss(logits, targets, self.smooth)


class BCE(Loss):
    pos_weight: Tensor  # buffer

    def __init__(self, pos_weight: float):
        super().__init__()
        self.register_buffer("pos_weight", torch.tensor([pos_weight]), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=self.pos_weight)


def build_dice_bce(cfg, ctx) -> DiceBCE:
    return DiceBCE(cfg.dice_weight, cfg.bce_weight, cfg.pos_weight, cfg.smooth)


def build_dice_mse(cfg, ctx) -> DiceMSE:
    return DiceMSE(cfg.dice_weight, cfg.mse_weight, cfg.smooth)


def build_dice(cfg, ctx) -> Dice:
    return Dice(cfg.smooth)


def build_bce(cfg, ctx) -> BCE:
    return BCE(cfg.pos_weight)
