"""A PNG overview of a store: a few labeled images with their labels, and one sequence."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.outfile import reason
from samfx.data.store import open_store, read_frames, read_index, read_sample

Tile = tuple[str, np.ndarray, np.ndarray]  # (title, image, label map)
COLORS = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 90], [70, 120, 255], [240, 200, 40]], np.float32) / 255


def _overlay(img: np.ndarray, lab: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    rgb = np.repeat(img[..., None].astype(np.float32) / 255, 3, axis=-1)
    color = COLORS[np.minimum(lab, len(COLORS) - 1)]
    mask = (lab > 0)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * color, rgb)


def write_preview(path: str | Path, out: str | Path, count: int = 4, frames: int = 6, seed: int = 0) -> Path:
    """Write `out`: `count` labeled images (image | overlay) and `frames` frames of one sequence."""
    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out}: is a folder; --out names the PNG file to write, e.g. {out / 'preview.png'}")
    index = read_index(path)
    rng = np.random.default_rng(seed)
    samples = [it for it in index.items.values() if it.kind == "sample"]
    seqs = [it for it in index.items.values() if it.kind == "sequence"]
    if not samples and not seqs:
        raise DataError(f"{path}: the store is empty; nothing to preview")
    with open_store(path) as f:
        pics = _labeled_images(f, samples, seqs, rng, count)
        strip = _sequence_strip(f, seqs[int(rng.integers(len(seqs)))], frames) if seqs else []
    names = ", ".join(f"{c}={n}" for c, n in zip(index.classes, index.class_names))
    _save_figure(pics, strip, f"{Path(path).name}  (labels: {names}; red/green/blue = 1/2/3)", out)
    return out



def _labeled_images(f: Any, samples: list[Any], seqs: list[Any], rng: np.random.Generator, count: int) -> list[Tile]:
    """`count` random labeled images: the store's samples and its sequences' labeled ED/ES frames."""
    pics = []
    pool = [(it, -1) for it in samples] + [(it, fr) for it in seqs for fr in (it.ed, it.es)
                                            if fr >= 0 and it.labeled[fr]]
    for i in rng.permutation(len(pool))[:count]:
        it, fr = pool[i]
        img, lab = read_sample(f, it.id) if fr < 0 else read_frames(f, it.id, fr)
        phase = it.phase if fr < 0 else ("ED" if fr == it.ed else "ES")
        pics.append((f"{it.patient} {it.view} {phase}".strip(), img, lab))
    return pics


def _sequence_strip(f: Any, seq: Any, frames: int) -> list[Tile]:
    """`frames` evenly spaced frames of the sequence `seq`, ED and ES marked in the titles."""
    n = seq.shape[0]
    pick = sorted({int(round(x)) for x in np.linspace(0, n - 1, min(frames, n))})
    fr, lab = read_frames(f, seq.id, pick)
    return [(f"{seq.id} t={t}" + (" ED" if t == seq.ed else " ES" if t == seq.es else ""), a, b)
            for t, a, b in zip(pick, fr, lab)]


def _save_figure(pics: list[Tile], strip: list[Tile], title: str, out: Path) -> None:
    """One row of image | overlay pairs, one row of sequence frames with label contours; PNG to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(2 * len(pics), len(strip), 1)
    rows = (1 if pics else 0) + (1 if strip else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (name, img, lab) in enumerate(pics):
        axes[0, 2 * i].imshow(img, cmap="gray", vmin=0, vmax=255)
        axes[0, 2 * i].set_title(name, fontsize=7)
        axes[0, 2 * i + 1].imshow(_overlay(img, lab))
        axes[0, 2 * i + 1].set_title("labels", fontsize=7)
    for j, (name, img, lab) in enumerate(strip):
        ax = axes[rows - 1, j]
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        for k in range(1, int(lab.max()) + 1):
            if (lab == k).any():
                ax.contour(lab == k, levels=[0.5], colors=[COLORS[min(k, len(COLORS) - 1)]], linewidths=0.6)
        ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=80)
    except OSError as exc:
        raise DataError(f"{out}: cannot write the preview PNG ({reason(exc)}); --out names a PNG file in a "
                        f"writable folder") from None
    finally:
        plt.close(fig)
