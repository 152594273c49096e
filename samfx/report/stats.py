"""Numbers behind the report's tables: confidence intervals over patients and the image ranking.

Confidence intervals are percentile bootstrap intervals of the mean over patients: a patient's value
is the mean over its images (samfx.engine.eval.metrics.summarize), patients are resampled with replacement
``N_BOOT`` times with a fixed seed, and the interval is the 2.5th and 97.5th percentile of the
resampled means. Patients whose HD/HD95 is infinite (a mask empty in every image) are left out of
the mean and its interval and counted as ``n_inf``, as in the eval tables.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
SEED = 0
CI_METHOD = (f"{LEVEL:.0%} percentile bootstrap over patients ({N_BOOT} resamples of the patients with "
             f"replacement, seed {SEED}); patients with an infinite HD/HD95 are excluded and counted")


def bootstrap_ci(values: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL,
                 seed: int = SEED) -> tuple[float, float] | None:
    """(low, high) percentile bootstrap interval of the mean of `values`; None for fewer than 2."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _finite(values: Iterable[Any]) -> tuple[list[float], int]:
    """Finite floats, and how many were infinite (None in eval JSON stands for inf)."""
    finite, n_inf = [], 0
    for v in values:
        if v is None or (isinstance(v, float) and math.isinf(v)):
            n_inf += 1
        elif not math.isnan(float(v)):
            finite.append(float(v))
    return finite, n_inf


def metric_ci(values: Iterable[Any]) -> dict[str, Any]:
    """{mean, lo, hi, n, n_inf} of one metric over patients."""
    finite, n_inf = _finite(values)
    ci = bootstrap_ci(finite)
    return {"mean": float(np.mean(finite)) if finite else None, "lo": ci[0] if ci else None,
            "hi": ci[1] if ci else None, "n": len(finite), "n_inf": n_inf}


def class_table(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{class: {metric: metric_ci}} over the eval report's patients."""
    patients = report.get("patients") or []
    return {name: {m: metric_ci(p["classes"][name].get(m) for p in patients)
                   for m in ("dice", "iou", "hd", "hd95")}
            for name in report["classes"]}


def image_score(record: dict[str, Any]) -> float:
    """Mean Dice over the classes of one image record (what worst/best are ranked by)."""
    dices = [c["dice"] for c in record["classes"].values() if c.get("dice") is not None]
    return float(np.mean(dices)) if dices else 0.0


def rank_images(images: list[dict[str, Any]], k: int = 5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(worst k, best k) image records by mean Dice; never the same image in both lists."""
    order = sorted(range(len(images)), key=lambda i: (image_score(images[i]), i))
    worst = order[:k]
    best = [i for i in reversed(order) if i not in worst][:k]
    return [images[i] for i in worst], [images[i] for i in best]


def bland_altman(pred: Sequence[float], truth: Sequence[float]) -> dict[str, Any]:
    """Bias (mean of pred - truth) and 95 % limits of agreement (bias ± 1.96 SD, ddof=1) over finite pairs."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(t)
    diff, mean = (p - t)[ok], ((p + t) / 2)[ok]
    sd = float(diff.std(ddof=1)) if diff.size > 1 else math.nan
    bias = float(diff.mean()) if diff.size else math.nan
    return {"mean": mean.tolist(), "diff": diff.tolist(), "bias": bias, "sd": sd,
            "loa": (bias - 1.96 * sd, bias + 1.96 * sd), "n": int(ok.sum()), "n_undefined": int((~ok).sum())}
