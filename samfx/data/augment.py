"""Resizing and augmentation in torch, for images in [0,1] and integer label maps.

The augmentation config is the dict form of :class:`samfx.config.schema.AugmentSection` (rotation, scale,
gamma, contrast, hflip). Parameters are drawn from ``numpy.random.default_rng([seed, epoch, index])``
so an item gets the same augmentation for the same (seed, epoch, index), in any worker; all frames
of a clip share one draw. Images are resampled bilinearly, labels by nearest neighbour.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from samfx.config.schema import AugmentSection
from samfx.contracts.errors import DataError, did_you_mean


def check_augment(cfg: dict[str, Any] | AugmentSection | None) -> dict[str, Any] | None:
    """Validate an augmentation config: None means no augmentation; missing keys take
    AugmentSection defaults (so {} is the default augmentation)."""
    if cfg is None:
        return None
    if isinstance(cfg, AugmentSection):
        cfg = dataclasses.asdict(cfg)
    if not isinstance(cfg, dict):
        raise DataError(f"augment: expected a mapping of AugmentSection keys or None, got {cfg!r}")
    known = {f.name for f in dataclasses.fields(AugmentSection)}
    for key in cfg:
        if key not in known:
            hint = did_you_mean(key, known) or "; known keys: " + ", ".join(sorted(known))
            raise DataError(f"augment.{key}: unknown key{hint}")
    out = {**dataclasses.asdict(AugmentSection()), **cfg}
    for key in ("scale", "gamma"):
        lo, hi = (float(v) for v in out[key])
        if not 0 < lo <= hi:
            raise DataError(f"augment.{key}: expected [low, high] with 0 < low <= high, got {out[key]}")
        out[key] = [lo, hi]
    if float(out["rotation"]) < 0 or not 0 <= float(out["contrast"]) < 1:
        raise DataError(f"augment: rotation must be >= 0 and contrast in [0, 1), got "
                        f"{out['rotation']} and {out['contrast']}")
    return out


@dataclass(frozen=True)
class AugParams:
    angle: float = 0.0        # degrees, counter-clockwise
    scale: float = 1.0        # >1 zooms in (crops), <1 zooms out (pads with black)
    gamma: float = 1.0
    contrast: float = 1.0
    flip: bool = False

    @property
    def identity_geometry(self) -> bool:
        return self.angle == 0 and self.scale == 1 and not self.flip


def draw_params(cfg: dict[str, Any] | None, seed: int, epoch: int, index: int) -> AugParams:
    """Augmentation parameters for one item (identity when `cfg` is None)."""
    if not cfg:
        return AugParams()
    rng = np.random.default_rng([int(seed), int(epoch), int(index)])
    r = float(cfg["rotation"])
    angle = float(rng.uniform(-r, r))
    # log-uniform so zoom in and out are equally likely
    scale = float(np.exp(rng.uniform(math.log(cfg["scale"][0]), math.log(cfg["scale"][1]))))
    gamma = float(np.exp(rng.uniform(math.log(cfg["gamma"][0]), math.log(cfg["gamma"][1]))))
    c = float(cfg["contrast"])
    contrast = float(rng.uniform(1 - c, 1 + c))
    flip = bool(cfg["hflip"]) and bool(rng.random() < 0.5)
    return AugParams(angle, scale, gamma, contrast, flip)


def resize(images: np.ndarray, labels: np.ndarray | None, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images (N,H,W) -> float (N,1,S,S) in [0,1] (bilinear, antialiased); labels (N,H,W) ->
    int64 (N,S,S) (nearest)."""
    img = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
    if img.shape[-2:] != (size, size):
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        img = img.clamp_(0.0, 1.0)
    return img, None if labels is None else resize_labels(labels, size)


def resize_labels(labels: np.ndarray, size: int) -> torch.Tensor:
    """Label maps (N,H,W) of class ids -> int64 (N,S,S), nearest."""
    lab = torch.from_numpy(np.ascontiguousarray(labels)).unsqueeze(1)
    if lab.shape[-2:] != (size, size):
        lab = F.interpolate(lab.float(), size=(size, size), mode="nearest-exact").round_()
    return lab.squeeze(1).long()


def apply(img: torch.Tensor, lab: torch.Tensor | None, p: AugParams) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply `p` to images (N,1,S,S) and labels (N,S,S); the same parameters for all N frames."""
    if not p.identity_geometry:
        a = math.radians(p.angle)
        fx = -1.0 if p.flip else 1.0
        # output -> input sampling coordinates: rotate by -angle, divide by the zoom
        theta = torch.tensor([[fx * math.cos(a) / p.scale, -math.sin(a) / p.scale, 0.0],
                              [fx * math.sin(a) / p.scale, math.cos(a) / p.scale, 0.0]], dtype=img.dtype)
        grid = F.affine_grid(theta.expand(img.shape[0], 2, 3), list(img.shape), align_corners=False)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if lab is not None:
            lab = F.grid_sample(lab.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros",
                                align_corners=False).squeeze(1).round_().long()
    if p.gamma != 1.0:
        img = img.clamp(0.0, 1.0).pow(p.gamma)
    if p.contrast != 1.0:
        mean = img.mean(dim=(1, 2, 3), keepdim=True)
        img = (img - mean) * p.contrast + mean
    return img.clamp(0.0, 1.0), lab
