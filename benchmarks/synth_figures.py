"""The generator pictures of docs/data.md: v1 next to v2 (ED, ES and a strip of frames with label
contours) and v2's effects switched off one at a time. Run from the repository root (~1 min on a CPU):

    .venv/bin/python benchmarks/synth_figures.py            # writes docs/img/synth_v1_v2.png, synth_v2_effects.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from samfx.data.preview import COLORS
from samfx.data.synth.v1 import render_sequence as render_v1
from samfx.data.synth.v2.options import SynthV2Options
from samfx.data.synth.v2.render import render_sequence as render_v2

SIZE = (160, 180)


def _show(ax, img, lab=None, title=""):
    ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    for k in (1, 2, 3):
        if lab is not None and (lab == k).any():
            ax.contour(lab == k, levels=[0.5], colors=[COLORS[k]], linewidths=0.5)
    ax.set_title(title, fontsize=6)
    ax.axis("off")


def side_by_side(out: Path, seed: int, patient: int, frames: int) -> None:
    """Rows: v1 4CH, v2 4CH (full cycle), v2 2CH (half cycle); columns: ED, ES (no contours), then frames."""
    v1 = render_v1(seed, patient, "4CH", frames, SIZE)
    rows = [("v1 4CH", v1[0], v1[1], 0, frames - 1)]
    for view, full in (("4CH", 1.0), ("2CH", 0.0)):
        s = render_v2(seed, patient, view, frames, SIZE, SynthV2Options(full_cycle=full))
        rows.append((f"v2 {view} {s.quality} {'full' if s.full_cycle else 'half'} cycle", s.frames, s.labels,
                     s.ed, s.es))
    strip = np.linspace(0, frames - 1, 6).round().astype(int)
    fig, axes = plt.subplots(len(rows), 8, figsize=(8 * 1.2, len(rows) * 1.4))
    for r, (name, fr, lab, ed, es) in enumerate(rows):
        _show(axes[r, 0], fr[ed], None, f"{name}\nED (t={ed})")
        _show(axes[r, 1], fr[es], None, f"ES (t={es})")
        for c, t in enumerate(strip):
            _show(axes[r, 2 + c], fr[t], lab[t], f"t={t}" + (" ED" if t == ed else " ES" if t == es else ""))
    fig.suptitle("synthetic echo v1 vs v2 (labels: red LV, green MYO, blue LA)", fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(out, dpi=64)
    plt.close(fig)


EFFECTS = [("v2 defaults", {}), ("clutter=0", {"clutter": 0.0}), ("specular_dropout=0", {"specular_dropout": 0.0}),
           ("shadow=1", {"shadow": 1.0}), ("tgc=1, attenuation", {"tgc": 1.0}),
           ("trabeculae=0, papillary=false", {"trabeculae": 0.0, "papillary": False}),
           ("noise=0", {"noise": 0.0}), ("psf_lateral_mm=3", {"psf_lateral_mm": 3.0})]


def effects(out: Path, seed: int, patient: int) -> None:
    """One ED frame of v2 with each effect changed, then the three image qualities."""
    fig, axes = plt.subplots(2, 6, figsize=(6 * 1.35, 2 * 1.45))
    pics = [(name, render_v2(seed, patient, "4CH", 2, SIZE, SynthV2Options(**kw)).frames[0]) for name, kw in EFFECTS]
    found: dict[str, np.ndarray] = {}
    p = 1
    while len(found) < 3 and p < 40:  # the first patient of each quality
        s = render_v2(seed, p, "2CH", 2, SIZE)
        found.setdefault(s.quality, s.frames[0])
        p += 1
    pics += [(f"quality {q}", found[q]) for q in ("Good", "Medium", "Poor") if q in found]
    for ax, (name, img) in zip(axes.flat, pics):
        _show(ax, img, None, name)
    for ax in axes.flat[len(pics):]:
        ax.axis("off")
    fig.tight_layout(pad=0.2)
    fig.savefig(out, dpi=72)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patient", type=int, default=1)
    ap.add_argument("--frames", type=int, default=12)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    side_by_side(args.out / "synth_v1_v2.png", args.seed, args.patient, args.frames)
    effects(args.out / "synth_v2_effects.png", args.seed, args.patient)
    for name in ("synth_v1_v2.png", "synth_v2_effects.png"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
