"""The scan sector of an ultrasound image or cine loop, to blank what lies outside it.

Sector pixels are the gray (uncoloured) pixels that are not black in some frame and, in a loop,
change over time (speckle moves, burnt-in text and scales do not). The largest connected component
of those, after a small opening that cuts thin lines (scale ticks) off it, is filled by its convex
hull: a fan is convex, so dark blood inside it is kept. An image with no such component holding
at least 1 % of the pixels has no sector to find (None).
"""
from __future__ import annotations

import numpy as np

BLACK = 8           # gray levels at or below this count as background
MIN_FRACTION = 0.01


def sector_mask(frames: np.ndarray, coloured: np.ndarray | None = None) -> np.ndarray | None:
    """(H,W) uint8 0/1 sector mask of gray frames (T,H,W) uint8, or None when none is found.
    `coloured` (H,W) bool marks pixels to leave out of the search (coloured overlays)."""
    from scipy import ndimage

    lit = frames.max(0) > BLACK
    if frames.shape[0] > 1:
        lit &= frames.max(0) != frames.min(0)
    if coloured is not None:
        lit &= ~coloured
    lit = ndimage.binary_opening(lit, structure=np.ones((3, 3), bool))
    components, n = ndimage.label(lit)
    if n == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    if sizes.max() < MIN_FRACTION * lit.size:
        return None
    return _hull(components == int(np.argmax(sizes)) + 1)


def _hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull (uint8 0/1) of a bool mask's pixels."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull, QhullError

    rows, cols = np.nonzero(mask)
    pts = np.stack([cols, rows], 1).astype(np.float64)
    try:
        hull = ConvexHull(pts)
    except QhullError:  # all pixels on one line: the component itself
        return mask.astype(np.uint8)
    canvas = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts[hull.vertices]], fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8) | mask.astype(np.uint8)
