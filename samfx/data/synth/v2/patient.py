"""Per-patient and per-view parameters of generator v2, and the cardiac cycle over a sequence.

A patient is a function of (seed, patient index) only. Its heart: size, shape, EF, heart rate,
wall thickness, LA; its exam: sector depth and width, gain, dynamic range, image quality, whether
the sequences cover a full cycle. A view adds the probe position (apex depth, tilt, foreshortening).
"""
from __future__ import annotations

import math

import numpy as np

from samfx.data.synth.v2.options import SynthV2Options

QUALITIES = ("Good", "Medium", "Poor")
# per quality: (PSF widening, clutter, noise, specular dropout scale, extra dropout segments, contrast)
QUALITY = {
    "Good": (1.0, 0.5, 0.6, 0.8, (0, 1), 1.0),
    "Medium": (1.3, 1.0, 1.0, 1.0, (0, 2), 0.85),
    "Poor": (1.7, 1.8, 1.6, 1.15, (1, 3), 0.7),
}


def patient_params(seed: int, patient: int, opts: SynthV2Options) -> dict:
    """The heart and the exam of one patient (mm, degrees, fractions), shared by its views."""
    rng = np.random.default_rng([seed, patient, 20])
    ef = float(np.clip(rng.normal(0.53, 0.11), 0.22, 0.78))
    s_long = float(np.clip(rng.normal(0.13, 0.03), 0.05, 0.22)) * math.sqrt(ef / 0.55)
    mix = np.asarray(opts.quality_mix, float)
    hr = float(np.clip(rng.normal(74.0, 13.0), 48.0, 120.0))
    return dict(
        ef=ef, s_long=s_long, width_ratio=math.sqrt((1 - ef) / (1 - s_long)), heart_rate=hr,
        systole=float(np.clip(0.30 + 0.0022 * (hr - 60), 0.28, 0.45)),  # share of the cycle
        length=rng.uniform(70.0, 95.0), half_width=rng.uniform(20.0, 28.0), thickness=rng.uniform(7.5, 12.5),
        la_width=rng.uniform(30.0, 44.0), la_length=rng.uniform(34.0, 50.0), la_growth=rng.uniform(1.15, 1.5),
        depth=rng.uniform(130.0, 180.0), half_angle=rng.uniform(31.0, 42.0),
        gain_db=rng.normal(0.0, 3.0), dynamic_range_db=rng.uniform(45.0, 60.0),
        quality=str(rng.choice(QUALITIES, p=mix / mix.sum())),
        full_cycle=bool(rng.random() < opts.full_cycle),
    )


def view_params(rng: np.random.Generator, hp: dict, view: str) -> dict:
    """Probe position for one view: apex depth and lateral offset, tilt, foreshortening (mm, radians)."""
    return dict(
        apex_depth=rng.uniform(14.0, 30.0),
        apex_x=rng.uniform(-8.0, 8.0) + (10.0 if view == "4CH" else 0.0),
        tilt=math.radians(rng.uniform(-14.0, 14.0)),
        L_ed=hp["length"] * rng.uniform(0.92, 1.03),
        Wb_ed=hp["half_width"] * rng.uniform(0.9, 1.1),
        th_ed=hp["thickness"] * rng.uniform(0.9, 1.1),
        y0=-rng.uniform(2.0, 8.0),
    )


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _bump(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """sin² bump: 0 outside [lo, hi], 1 at its middle."""
    s = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return np.sin(np.pi * s) ** 2


def cycle(frames: int, hp: dict) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(phi, valve, es, seconds): per-frame contraction phi (0 at ED .. 1 at ES), mitral opening (0 closed
    .. 1 open), the ES frame index and the duration covered.

    Half cycle: ED (frame 0) -> ES (last frame), valve closed throughout. Full cycle: systole to the ES
    frame, then diastole (rapid filling with the valve wide open, diastasis half closed, the atrial kick
    opening it again) up to just before the next ED; the valve is closed at ED and at ES."""
    T = frames
    period = 60.0 / hp["heart_rate"]
    if not hp["full_cycle"] or T < 5:
        phi = (1 - np.cos(np.pi * np.arange(T) / max(T - 1, 1))) / 2
        return phi.astype(np.float32), np.zeros(T, np.float32), T - 1, hp["systole"] * period
    es = int(np.clip(round(hp["systole"] * T), 2, T - 3))
    t = np.arange(T, dtype=np.float64)
    phi = np.empty(T)
    phi[: es + 1] = (1 - np.cos(np.pi * t[: es + 1] / es)) / 2
    tau = (t[es + 1:] - es) / (T - es)  # diastole 0 .. 1 (next ED excluded)
    phi[es + 1:] = 1 - 0.78 * _smoothstep(tau / 0.4) - 0.22 * _smoothstep((tau - 0.68) / 0.3)
    valve = np.zeros(T)
    valve[es + 1:] = np.maximum.reduce([_bump(tau, 0.0, 0.5), 0.3 * _bump(tau, 0.3, 0.8),
                                        0.75 * _bump(tau, 0.66, 1.0)])
    return phi.astype(np.float32), valve.astype(np.float32), es, period
