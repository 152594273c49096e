"""What both generator versions share: the label ids, the views, the LV long-axis profile, smooth
random fields and the area-length ejection fraction."""
from __future__ import annotations

import math

import numpy as np

CLASSES, CLASS_NAMES = [1, 2, 3], ["LV", "MYO", "LA"]
VIEWS = ("2CH", "4CH")

Q_GRID = np.linspace(0.0, 1.0, 2049)
PROFILE = (np.sqrt(1.0 - (1.0 - Q_GRID) ** 2.2) * (1.0 - 0.18 * Q_GRID**4) / 0.97).astype(np.float32)


def profile(q: np.ndarray) -> np.ndarray:
    """LV half-width along the long axis, q = 0 at the apex .. 1 at the mitral plane (max 1)."""
    idx = (np.clip(q, 0.0, 1.0) * (len(Q_GRID) - 1)).astype(np.int32)  # table lookup: fast
    return PROFILE[idx]


def smooth_field(rng, shape, cells=6, lo=0.0, hi=1.0):
    """Smooth random field in [lo, hi] (bicubic-ish upsampling of a coarse grid)."""
    from scipy.ndimage import zoom

    coarse = rng.random((cells, cells)).astype(np.float32)
    f = zoom(coarse, (shape[0] / cells, shape[1] / cells), order=3, mode="reflect")[: shape[0], : shape[1]]
    f = (f - f.min()) / max(float(f.max() - f.min()), 1e-6)
    return (lo + (hi - lo) * f).astype(np.float32)


def area_length_ef(areas: dict[str, tuple[float, float]], lengths: dict[str, tuple[float, float]]) -> float:
    """Ejection fraction (%) by the area-length method (biplane when both views exist)."""
    vols = []
    for i in (0, 1):  # ED, ES
        if len(areas) >= 2:
            a2, a4 = areas["2CH"][i], areas["4CH"][i]
            length = min(lengths["2CH"][i], lengths["4CH"][i])
            vols.append(8 / (3 * math.pi) * a2 * a4 / length)
        else:
            (a,), (length,) = [v[i] for v in areas.values()], [v[i] for v in lengths.values()]
            vols.append(8 / (3 * math.pi) * a * a / length)
    return 100.0 * (vols[0] - vols[1]) / vols[0]
