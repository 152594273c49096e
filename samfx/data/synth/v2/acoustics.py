"""Imaging of generator v2 on the beam (polar) grid: samples at depth r along `beams` scan lines.

The received complex signal of a frame is the scatterer field (tissue scatterers sampled where the
tissue was at ED, so the speckle moves with it; blood scatterers renewed frame to frame) weighted by
the backscatter amplitude, convolved with the point-spread function (axial sigma fixed in mm, lateral
sigma widening away from the transmit focus), attenuated twice along the beam (tissue, blood and a rib
when there is one), plus static near-field clutter and reverberations and electronic noise. The TGC
gives back part of the expected attenuation, the envelope is log-compressed to the patient's gain and
dynamic range, and the frames are scan-converted to the pixel grid.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from samfx.data.synth.v2.options import SynthV2Options

F32 = np.float32


def beam_grid(depth: float, half_angle: float, y0: float, samples: int, beams: int) -> dict:
    """r (Nr,1) and theta (1,Nb) of the beam samples, their image coordinates (x, y) and beam direction."""
    dr = depth / samples
    r = ((np.arange(samples, dtype=F32) + 0.5) * dr)[:, None]
    theta = np.linspace(-half_angle, half_angle, beams, dtype=F32)[None, :]
    sin, cos = np.sin(theta), np.cos(theta)
    return dict(r=r, theta=theta, dr=dr, dtheta=float(theta[0, 1] - theta[0, 0]), half=half_angle, y0=y0,
                depth=depth, x=r * sin, y=y0 + r * cos, beam=(sin, cos))


def tissue_field(rng: np.random.Generator, u0: np.ndarray, v0: np.ndarray, cell: float = 0.3) -> np.ndarray:
    """(2, T, Nr, Nb) tissue scatterers (real, imaginary) at the material coordinates (u0, v0): a complex
    Gaussian field on a 0.3 mm grid, smoothed to ~0.5 mm so that sampling it at moved points moves the
    pattern rather than drawing a new one."""
    lo_u, lo_v = float(u0.min()) - 2, float(v0.min()) - 2
    nu, nv = int((float(u0.max()) - lo_u) / cell) + 4, int((float(v0.max()) - lo_v) / cell) + 4
    field = rng.standard_normal((2, nu, nv), dtype=F32)
    field = gaussian_filter(field, (0, 0.5 / cell, 0.5 / cell)) * (2 * math.sqrt(math.pi) * 0.5 / cell)
    iu, iv = (u0 - lo_u) / cell, (v0 - lo_v) / cell
    return bilinear(field, iu, iv)


def bilinear(grids: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(C, *shape) values of C grids (C, n, m) at fractional indices (i, j) (broadcast), edges clamped."""
    c, n, m = grids.shape
    i = np.clip(i, 0, n - 1.001)
    j = np.clip(j, 0, m - 1.001)
    i0, j0 = i.astype(np.int64), j.astype(np.int64)
    fi, fj = (i - i0).astype(F32), (j - j0).astype(F32)
    flat = grids.reshape(c, -1)
    k = i0 * m + j0
    return ((flat[:, k] * (1 - fj) + flat[:, k + 1] * fj) * (1 - fi)
            + (flat[:, k + m] * (1 - fj) + flat[:, k + m + 1] * fj) * fi)


def blood_field(rng: np.random.Generator, shape: tuple[int, ...], correlation: float) -> np.ndarray:
    """(2, T, Nr, Nb) blood scatterers: unit complex Gaussian, AR(1) over frames with `correlation`."""
    f = rng.standard_normal((2, *shape), dtype=F32)
    keep, new = correlation, math.sqrt(1 - correlation**2)
    for t in range(1, shape[0]):
        f[:, t] = keep * f[:, t - 1] + new * f[:, t]
    return f


def psf(signal: np.ndarray, g: dict, opts: SynthV2Options, widen: float) -> np.ndarray:
    """Convolve (2, T, Nr, Nb) with the PSF: axial Gaussian (psf_axial_mm), lateral Gaussian whose width
    in mm grows with the distance from the focus, converted to beams per depth (3 widths, interpolated)."""
    ax = opts.psf_axial_mm * widen / g["dr"]
    out = gaussian_filter(signal, (0, 0, ax, 0))
    r = g["r"][:, 0]
    focus = opts.focus * g["depth"]
    width = opts.psf_lateral_mm * widen * np.sqrt(1 + ((r - focus) / (0.35 * focus)) ** 2)
    beams = np.clip(width / np.maximum(r, 1.0) / g["dtheta"], 0.5, 4.0)
    levels = np.array([0.5, 1.5, 4.0])
    filtered = [gaussian_filter(out, (0, 0, 0, s)) for s in levels]
    k = np.clip(np.searchsorted(levels, beams) - 1, 0, len(levels) - 2)
    a = ((beams - levels[k]) / (levels[k + 1] - levels[k])).astype(F32)[:, None]
    res = np.empty_like(out)
    for i in range(len(levels) - 1):
        rows = k == i
        if rows.any():
            res[:, :, rows] = (1 - a[rows]) * filtered[i][:, :, rows] + a[rows] * filtered[i + 1][:, :, rows]
    return res


def transmission(g: dict, blood: np.ndarray, opts: SynthV2Options, rib: tuple[float, float, float] | None,
                 ) -> np.ndarray:
    """(T, Nr, Nb) two-way amplitude factor exp(-2 ∫ alpha dr): tissue alpha from attenuation_db_cm_mhz
    at frequency_mhz, blood 5x less, a rib (depth mm, angle, half-width) stops most of its beams."""
    nepers = opts.attenuation_db_cm_mhz * opts.frequency_mhz / 10.0 / 8.686  # per mm, one way
    alpha = np.where(blood, 0.2 * nepers, nepers).astype(F32)
    if rib is not None:
        depth, angle, width = rib
        lateral = np.exp(-(((g["theta"] - angle) / width) ** 8))
        alpha = alpha + (0.25 * lateral * np.exp(-(((g["r"] - depth) / 3.0) ** 2))).astype(F32)
    return np.exp(-2 * np.cumsum(alpha, axis=1) * g["dr"]).astype(F32)


def clutter(rng: np.random.Generator, g: dict, frames: int, level: float) -> np.ndarray:
    """(2, T, Nr, Nb) near-field clutter and reverberation haze: a slowly changing complex field (frame to
    frame correlation 0.96) whose amplitude decays from the skin, with echoes of the chest wall at
    multiples of its depth, patchy across the beams."""
    r = g["r"]
    wall = rng.uniform(8.0, 16.0)
    amp = np.exp(-r / rng.uniform(10.0, 20.0)) + sum(0.55**k * np.exp(-(((r - k * wall) / 2.5) ** 2))
                                                     for k in range(1, 5))
    patch = gaussian_filter(rng.random(g["theta"].shape[1]).astype(F32), 6.0)
    patch = 0.4 + 1.2 * (patch - patch.min()) / max(float(np.ptp(patch)), 1e-6)
    pair = gaussian_filter(rng.standard_normal((2, 2, r.shape[0], g["theta"].shape[1]), dtype=F32), (0, 0, 1.0, 1.5))
    turn = 0.3 * np.arange(frames, dtype=F32)[:, None, None]  # consecutive frames correlate by cos(0.3) = 0.96
    field = np.cos(turn) * pair[:, 0, None] + np.sin(turn) * pair[:, 1, None]
    return (level * amp * patch[None, :]).astype(F32) * field / max(float(pair.std()), 1e-6)


def log_compress(env: np.ndarray, ref: float, gain_db: float, dynamic_range_db: float) -> np.ndarray:
    """Display value in [0, 1]: 1 at ref·10^(-gain/20) and above, 0 at dynamic_range_db below."""
    db = 20 * np.log10(np.maximum(env, 1e-12) / ref) + gain_db
    return np.clip(1 + db / dynamic_range_db, 0.0, 1.0).astype(F32)


def scan_convert(img: np.ndarray, g: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(T, H, W) uint8 from (T, Nr, Nb) display values: bilinear in (r, theta), black outside the sector."""
    r = np.hypot(x, y - g["y0"])
    th = np.arctan2(x, y - g["y0"])
    val = bilinear(img, r / g["dr"] - 0.5, (th + g["half"]) / g["dtheta"])
    inside = (np.abs(th) <= g["half"]) & (r < g["depth"] - 2.0)
    return np.round(np.clip(val, 0, 1) * inside * 255).astype(np.uint8)
