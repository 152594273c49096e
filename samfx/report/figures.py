"""The report's figures, drawn with matplotlib (Agg) and returned as base64 PNG for inlining."""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from samfx.engine.eval.overlays import color_of


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_b64(fig: Any, dpi: int = 100, tight: bool = True) -> str:
    """Render and close a figure (cropped to its content when `tight`); base64 of its PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _series(rows: list[dict[str, str]]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """{stage: {key: (global steps, values)}} from log.csv rows, stages in the order they ran."""
    out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for r in rows:
        xs, ys = out.setdefault(r["stage"], {}).setdefault(r["key"], ([], []))
        xs.append(int(r["global_step"]))
        ys.append(float(r["value"]))
    return out


def _groups(keys: Sequence[str]) -> dict[str, list[str]]:
    losses = [k for k in keys if k.endswith("loss") or "/aux/" in k]  # train/aux/<name>: auxiliary losses
    groups = {"loss": sorted(losses),
              "metrics": sorted(k for k in keys if k not in losses and not k.endswith("lr")),
              "learning rate": sorted(k for k in keys if k.endswith("lr"))}
    return {g: ks for g, ks in groups.items() if ks}


def stage_curves(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    """[(stage, PNG)]: one row of panels (loss, metrics, learning rate) per stage against the global step."""
    plt = _plt()
    out = []
    for stage, series in _series(rows).items():
        groups = _groups(list(series))
        fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 2.9), squeeze=False)
        for ax, (title, keys) in zip(axes[0], groups.items()):
            for key in keys:
                xs, ys = series[key]
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, lw=1.2, label=key)
            ax.set_title(f"{stage}: {title}", fontsize=10)
            ax.set_xlabel("optimizer step (whole run)", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        out.append((stage, png_b64(fig)))
    return out


def _rgb(class_id: int) -> tuple[float, float, float]:
    r, g, b = (float(v) / 255.0 for v in color_of(class_id))
    return r, g, b


def draw_overlay(ax: Any, image: np.ndarray, pred: np.ndarray, gt: np.ndarray,
                 classes: Sequence[int]) -> dict[tuple[str, int], Any]:
    """Gray image, a light fill of the prediction, and per class the prediction's contour (solid) and
    the truth's contour (dashed) in the class colour. Returns {("pred" | "truth", class): ContourSet}."""
    ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    fill = np.zeros((*pred.shape, 4), dtype=np.float32)
    drawn: dict[tuple[str, int], Any] = {}
    for c in classes:
        fill[pred == c] = (*_rgb(c), 0.22)
    ax.imshow(fill, interpolation="nearest")
    for k, c in enumerate(classes):
        # dashes shifted per class, so where two classes' truths share a boundary both colours show
        dashed = (3.0 * (k % 2), (3.0, 3.0))
        for source, mask, style, width in (("truth", gt == c, dashed, 1.8), ("pred", pred == c, "-", 1.8)):
            if mask.any() and not mask.all():
                drawn[(source, c)] = ax.contour(mask.astype(np.float32), levels=[0.5], colors=[_rgb(c)],
                                                linestyles=[style], linewidths=width)
    ax.set_xticks([])
    ax.set_yticks([])
    return drawn


def overlay_png(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, classes: Sequence[int]) -> str:
    """One overlay (:func:`draw_overlay`) as a PNG of about 300x300 pixels."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.0, 3.0))
    draw_overlay(ax, image, pred, gt, classes)
    fig.subplots_adjust(0, 0, 1, 1)
    return png_b64(fig, tight=False)


def legend_png(classes: Sequence[int], names: Sequence[str]) -> str:
    """A one-line key: class colours, solid = prediction, dashed = truth."""
    from matplotlib.lines import Line2D

    plt = _plt()
    fig = plt.figure(figsize=(7.5, 0.35))
    handles = [Line2D([], [], color=_rgb(c), lw=6, alpha=0.6, label=n) for c, n in zip(classes, names)]
    handles += [Line2D([], [], color="k", lw=1.6, ls="-", label="prediction"),
                Line2D([], [], color="k", lw=1.4, ls="--", label="truth")]
    fig.legend(handles=handles, loc="center", ncol=len(handles), frameon=False, fontsize=9)
    return png_b64(fig)


def lv_area_png(seqs: list[dict[str, Any]]) -> str:
    """LV area over the frames, predicted (solid) vs truth (dashed, labeled frames), with ED/ES marks,
    one panel per sequence (at most 6)."""
    plt = _plt()
    seqs = seqs[:6]
    cols = min(3, len(seqs))
    rows = (len(seqs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(seqs):]:
        ax.set_visible(False)
    for ax, s in zip(axes.flat, seqs):
        _area_panel(ax, s)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return png_b64(fig)


def _area_panel(ax: Any, s: dict[str, Any]) -> None:
    pred = np.array([np.nan if v is None else v for v in s["pred"]], dtype=float)
    true = np.array([np.nan if v is None else v for v in s["truth"]], dtype=float)
    t = np.arange(len(pred))
    ax.plot(t, pred, "-", color="tab:red", lw=1.6, label="predicted")
    ok = np.isfinite(true)
    style = "--o" if ok.all() else "o"  # a line through sparse labeled frames would invent the curve between
    ax.plot(t[ok], true[ok], style, color="k", lw=1.2, ms=3 if ok.all() else 5, label="truth (labeled frames)")
    for name, key, marker in (("ED", "ed_pred", "^"), ("ES", "es_pred", "v")):
        if s.get(key) is not None:
            ax.plot([s[key]], [pred[s[key]]], marker, color="tab:red", ms=8, label=f"{name} predicted")
    for name, key, style in (("ED", "ed_truth", ":"), ("ES", "es_truth", "-.")):
        if s.get(key) is not None and s[key] >= 0:
            ax.axvline(s[key], color="tab:blue", ls=style, lw=1.2, label=f"{name} truth")
    ax.set_title(str(s["id"]), fontsize=9)
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel("LV area (mm²)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def bland_altman_png(ba: dict[str, Any]) -> str:
    """EF Bland–Altman: difference (predicted − truth) against the mean, with bias and limits of agreement."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.scatter(ba["mean"], ba["diff"], s=18, color="tab:red", alpha=0.8)
    if np.isfinite(ba["bias"]):
        ax.axhline(ba["bias"], color="k", lw=1.2, label=f"bias {ba['bias']:+.1f}")
    if np.isfinite(ba["sd"]):
        lo, hi = ba["loa"]
        for y in (lo, hi):
            ax.axhline(y, color="k", ls="--", lw=1)
        ax.plot([], [], "k--", lw=1, label=f"95% limits {lo:+.1f} / {hi:+.1f}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("mean EF of predicted and truth (%)", fontsize=8)
    ax.set_ylabel("EF predicted − truth (points)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_b64(fig)
