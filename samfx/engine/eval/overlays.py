"""Overlay PNGs: the image in gray, the prediction as translucent colour, ground truth as white
contours (and prompt points as yellow dots when given)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from samfx.data.files import FULL, out_of_space
from samfx.data.outfile import reason

PALETTE = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 90], [70, 120, 240], [240, 180, 40],
                    [200, 80, 220], [60, 210, 220], [250, 130, 80]], dtype=np.float32)


def color_of(class_id: int) -> np.ndarray:
    return PALETTE[1 + (int(class_id) - 1) % (len(PALETTE) - 1)] if class_id else PALETTE[0]


def _edges(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def render(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None,
           points: np.ndarray | None = None, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8 (H,W,3) overlay of label maps on an image in [0,1]."""
    img = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    rgb = np.repeat(img[..., None] * 255.0, 3, axis=2)
    pred = np.asarray(pred)
    for c in np.unique(pred):
        if c == 0:
            continue
        m = pred == c
        rgb[m] = (1 - alpha) * rgb[m] + alpha * color_of(c)
        rgb[_edges(m)] = color_of(c)
    if gt is not None:
        gt = np.asarray(gt)
        for c in np.unique(gt):
            if c:
                rgb[_edges(gt == c)] = 255.0
    if points is not None:
        h, w = img.shape
        for x, y in np.asarray(points).reshape(-1, 2):
            yi, xi = int(round(float(y))), int(round(float(x)))
            rgb[max(0, yi - 1):min(h, yi + 2), max(0, xi - 1):min(w, xi + 2)] = [255, 230, 0]
    return rgb.astype(np.uint8)


def clear(folder: str | Path) -> None:
    """Delete the PNGs in `folder` (not below it), so a new set of overlays never mixes with an
    older, possibly longer one (e.g. from an eval that was killed or had more overlays)."""
    folder = Path(folder)
    if folder.is_dir():
        for png in folder.glob("*.png"):
            png.unlink(missing_ok=True)


def save_overlay(path: str | Path, image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None,
                 points: np.ndarray | None = None) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render(image, pred, gt, points)).save(path)
    return path


def write_error(exc: OSError, path: str | Path, what: str,
                elsewhere: str = "the run folder must be writable: evaluate a copy of the run in a writable folder",
                *, own_name: bool = True) -> str:
    """One line for an OSError `exc` raised while writing `path`: the file (the error's own when `own_name`
    and it has one, else `path`), that `what` failed, the reason (strerror, else the errno's text) and
    what to do: free space for a full disk or quota, else `elsewhere`."""
    where = (exc.filename if own_name else None) or path
    if out_of_space(exc) is not None or next((a for a in exc.args if isinstance(a, int)), None) in FULL:
        return f"{where}: {what} ({reason(exc)}); free disk space (or quota) and run again"
    return f"{where}: {what} ({reason(exc)}); {elsewhere}"
