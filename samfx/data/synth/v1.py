"""Synthetic apical 2CH/4CH echocardiography sequences (ED -> ES) with CAMUS label ids.

Each patient gets its own heart (size, position, tilt, wall thickness, shape irregularity, target
ejection fraction) and two views. A frame is rendered as echogenicity maps (blood dark, myocardium
bright with weak or missing wall segments, pericardium, valve leaflets, RV/RA in 4CH) plus haze
near the apex, multiplied by temporally correlated Rayleigh speckle, attenuated with depth and
partly compensated (TGC), log-compressed and masked to an ultrasound sector. Labels: 0 background,
1 LV cavity, 2 myocardium, 3 LA (inside the sector only). The stored EF is the biplane area-length
EF measured on the generated LV masks. Everything is a function of (seed, patient index), so a
patient is the same whatever the number of patients generated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from samfx.contracts.errors import DataError
from samfx.data.store import StoreWriter
from samfx.data.synth.common import Q_GRID, VIEWS, area_length_ef, profile, smooth_field

GENERATOR_VERSION = 1
# CAMUS-like image quality: (probability, myocardium, blood, max apex haze, wall dropouts, noise)
QUALITY = {
    "Good": (0.35, (0.50, 0.70), (0.02, 0.05), (0.05, 0.30), (0, 2), 0.02),
    "Medium": (0.45, (0.35, 0.55), (0.04, 0.09), (0.15, 0.50), (1, 3), 0.03),
    "Poor": (0.20, (0.22, 0.40), (0.07, 0.14), (0.30, 0.80), (2, 4), 0.05),
}


def _bullet(u, v, length, half_width, pert=0.0):
    """Inside a bullet shape with apex at u=0 pointing up, base at u=length, |v| <= width."""
    return (u >= 0) & (u <= length) & (np.abs(v) <= half_width * profile(u / length) * (1.0 + pert))


def patient_params(seed: int, patient: int) -> dict:
    """The heart of one patient (mm, degrees, fractions), shared by its views."""
    rng = np.random.default_rng([seed, patient, 0])
    ef = float(np.clip(rng.normal(0.54, 0.09), 0.30, 0.75))
    s_long = float(np.clip(rng.normal(0.12, 0.03), 0.04, 0.2)) * math.sqrt(ef / 0.55)
    th = rng.uniform(8.0, 12.0)
    return dict(
        ef=ef, s_long=s_long, width_ratio=math.sqrt((1 - ef) / (1 - s_long)),
        length=rng.uniform(72.0, 92.0), half_width=rng.uniform(21.0, 27.0), thickness=th,
        la_width=rng.uniform(30.0, 42.0), la_length=rng.uniform(34.0, 48.0), la_growth=rng.uniform(1.1, 1.3),
        depth=rng.uniform(140.0, 170.0),
        quality=str(rng.choice(list(QUALITY), p=[q[0] for q in QUALITY.values()])),
    )


def check_wall_flicker(value: float, where: str = "wall_flicker") -> None:
    """A DataError naming ``where`` unless ``value`` is a valid wall flicker (0..1)."""
    if not 0.0 <= value <= 1.0:
        raise DataError(f"{where}: must be in [0, 1] (0 = wall dropouts fixed over a sequence), got {value}")


def _flicker(rng, T: int, amount: float) -> np.ndarray:
    """(T,1,1) depth factor of one dropout in [1 - amount, 1]: a smooth periodic profile with a random
    period of 4-10 frames and phase, so the wall segment fades in and out over the sequence."""
    t = np.arange(T, dtype=np.float32)
    shown = 0.5 * (1 + np.cos(2 * np.pi * t / rng.uniform(4.0, 10.0) + rng.uniform(0, 2 * np.pi)))
    return (1 - amount * shown).astype(np.float32)[:, None, None]


def _phase(T: int) -> np.ndarray:
    """(T,1,1) contraction phase: 0 at ED .. 1 at ES (v1 sequences are half cycles)."""
    return ((1 - np.cos(np.pi * np.arange(T) / max(T - 1, 1))) / 2).astype(np.float32)[:, None, None]


def _view_geometry(rng, hp: dict, view: str, phi: np.ndarray) -> dict:
    """Apex position, tilt and the LV length / half-width / wall thickness per frame (mm)."""
    apex_depth = rng.uniform(16.0, 30.0)
    apex_x = rng.uniform(-8.0, 8.0) + (9.0 if view == "4CH" else 0.0)
    tilt = math.radians(rng.uniform(-12.0, 12.0))
    L_ed = hp["length"] * rng.uniform(0.95, 1.05)
    Wb_ed = hp["half_width"] * rng.uniform(0.9, 1.1)
    L = L_ed * (1 - hp["s_long"] * phi)
    Wb = Wb_ed * (1 - (1 - hp["width_ratio"]) * phi)
    th_ed = hp["thickness"] * rng.uniform(0.9, 1.1)
    th = np.minimum(th_ed * (L_ed + Wb_ed) / (L + Wb), 1.8 * th_ed)
    return dict(apex_depth=apex_depth, apex_x=apex_x, tilt=tilt, L_ed=L_ed, Wb_ed=Wb_ed, L=L, Wb=Wb,
                th_ed=th_ed, th=th)


def _sector_grid(rng, hp: dict, H: int, W: int, sp: float) -> dict:
    """Pixel coordinates (mm), polar coordinates from the transducer and the sector mask."""
    f32 = np.float32
    y = (np.arange(H, dtype=f32) + 0.5) * sp
    x = (np.arange(W, dtype=f32) + 0.5 - W / 2) * sp
    Y, X = np.meshgrid(y, x, indexing="ij")
    y0 = -rng.uniform(2.0, 8.0)
    r = np.hypot(X, Y - y0)
    ang = np.arctan2(X, Y - y0)
    half = math.radians(rng.uniform(33.0, 40.0))
    sector = (np.abs(ang) < half) & (r < hp["depth"] - 2.0)
    return dict(X=X, Y=Y, r=r, ang=ang, half=half, sector=sector)


def _heart_frame(g: dict, geo: dict):
    """(u, v): long-axis and lateral coordinates (mm, (1,H,W)) with the apex at the origin."""
    dX, dY = g["X"] - geo["apex_x"], g["Y"] - geo["apex_depth"]
    tilt = geo["tilt"]
    u = (dX * math.sin(tilt) + dY * math.cos(tilt))[None]
    v = (dX * math.cos(tilt) - dY * math.sin(tilt))[None]
    return u, v


def _perturbations(rng, q: np.ndarray, v: np.ndarray):
    """Smooth wall irregularity (labels) and the ~1 mm extra of the visible borders (annotation ambiguity)."""
    f32 = np.float32
    tables = np.zeros((2, len(Q_GRID)), f32)  # smooth boundary irregularity, different on each wall
    for k in (1, 2, 3):
        amp = rng.normal(0, 0.035, 2)[:, None]
        tables += (amp * np.sin(k * np.pi * Q_GRID + rng.uniform(0, 2 * np.pi))).astype(f32)
    qi = (q * (len(Q_GRID) - 1)).astype(np.int32)
    pert = np.where(v > 0, tables[0][qi], tables[1][qi])
    seen = np.zeros((2, len(Q_GRID)), f32)
    for k in (2, 3, 5):
        seen += (rng.normal(0, 0.02, 2)[:, None] * np.sin(k * np.pi * Q_GRID + rng.uniform(0, 2 * np.pi))).astype(f32)
    return pert, pert + np.where(v > 0, seen[0][qi], seen[1][qi])


def _left_heart(rng, hp: dict, geo: dict, phi, u, v, pert, pert_seen) -> dict:
    """LV cavity, myocardium, pericardium and LA masks (labeled and visible versions), (T,H,W)."""
    L, Wb, th = geo["L"], geo["Wb"], geo["th"]
    lv = _bullet(u, v, L, Wb, pert)
    th_apex = 0.8 * th
    outer = _bullet(u + th_apex, v, L + th_apex, Wb + th, pert) & (u <= L + 1.0)
    lv_seen = _bullet(u, v, L, Wb, pert_seen)
    outer_seen = _bullet(u + th_apex, v, L + th_apex, Wb + th * rng.uniform(0.9, 1.1), pert_seen) & (u <= L + 1.0)
    peri = _bullet(u + th_apex + 3.0, v, L + th_apex + 3.0, Wb + th + 3.0, pert) & ~outer & (u <= L - 5.0)
    # LA: ellipse beyond the mitral plane along a slightly different axis
    la_tilt = rng.uniform(-0.2, 0.2)
    g = 1 + (math.sqrt(hp["la_growth"]) - 1) * phi
    la_a, la_b = hp["la_length"] / 2 * g, hp["la_width"] / 2 * g * rng.uniform(0.9, 1.1)
    uc = L + 1.5 + la_a * 0.95
    lu, lv_ = (u - uc) * math.cos(la_tilt) + v * math.sin(la_tilt), v * math.cos(la_tilt) - (u - uc) * math.sin(la_tilt)
    la = ((lu / la_a) ** 2 + (lv_ / la_b) ** 2 <= 1.0) & (u > L + 1.0) & ~outer
    la_s = rng.uniform(0.94, 1.06)
    la_seen = ((lu / (la_a * la_s)) ** 2 + (lv_ / la_b) ** 2 <= 1.0) & (u > L + 1.0) & ~outer_seen
    return dict(lv=lv, outer=outer, myo=outer & ~lv, lv_seen=lv_seen, outer_seen=outer_seen, peri=peri,
                la=la, la_seen=la_seen, la_b=la_b, g=g)


def _right_heart(rng, geo: dict, phi, u, v, m: dict):
    """4CH: (blood, wall) masks of the right ventricle and atrium on the image left (v < 0), unlabeled."""
    L, L_ed, Wb_ed, th_ed, g = geo["L"], geo["L_ed"], geo["Wb_ed"], geo["th_ed"], m["g"]
    outer = m["outer"]
    wrv = rng.uniform(13.0, 19.0) * (1 - 0.12 * phi)
    vc = -(Wb_ed + th_ed + wrv * 0.95)
    u_rv0 = 0.25 * L_ed
    rv = _bullet(u - u_rv0, v - vc, L - u_rv0, wrv) & ~outer
    rv_wall = _bullet(u - u_rv0 + 3.5, v - vc, L - u_rv0 + 3.5, wrv + 3.5) & ~rv & ~outer & (u <= L)
    ra = ((((u - (L + 22.0)) / (20.0 * g)) ** 2 + ((v - vc * 1.05) / (17.0 * g)) ** 2 <= 1)
          & (u > L + 2.0) & ~outer & ~m["la"])
    return rv | ra, rv_wall


def _wall_gain(rng, frng, drops, T: int, q, v, wall_flicker: float):
    """Weak or missing wall segments: a per-pixel gain in (0, 1] on the walls (see render_sequence)."""
    f32 = np.float32
    dropouts = []  # (centre q, width, depth, wall side, depth factor per frame)
    for _ in range(int(rng.integers(drops[0], drops[1] + 1))):
        c, wdt, loss = rng.uniform(0.1, 1.0), rng.uniform(0.06, 0.18), rng.uniform(0.4, 1.0)
        side = rng.choice([-1.0, 1.0])
        dropouts.append((c, wdt, loss, side, _flicker(frng, T, wall_flicker) if wall_flicker else 1.0))
    for side in ((-1.0, 1.0) if wall_flicker else ()):  # transient dropouts, one per wall
        c, wdt, loss = frng.uniform(0.2, 0.9), frng.uniform(0.08, 0.18), frng.uniform(0.6, 1.0)
        dropouts.append((c, wdt, loss, side, _flicker(frng, T, wall_flicker)))
    wall_gain = np.ones_like(q)
    for c, wdt, loss, side, flicker_profile in dropouts:
        bump = loss * np.exp(-(((q - c) / wdt) ** 2)).astype(f32) * flicker_profile
        wall_gain = np.where(v * side > 0, wall_gain * (1 - bump), wall_gain)
    return wall_gain


@dataclass(frozen=True)
class _Scene:
    """What render_sequence has laid out for one view: patient and view geometry (``hp``, ``geo``),
    left-heart masks ``m``, contraction phase ``phi``, heart coordinates ``u``/``v``/``q``, the
    (T,H,W) ``shape`` and pixel spacing ``sp`` (mm)."""

    hp: dict
    view: str
    geo: dict
    m: dict
    phi: Any
    u: Any
    v: Any
    q: Any
    shape: tuple[int, int, int]
    sp: float


def _echogenicity(rng, frng, sc: _Scene, blood, tissue_extra, wall_flicker):
    """(T,H,W) echogenicity before speckle: tissue texture, walls with dropouts, pericardium, blood,
    papillary muscles and mitral leaflets, blurred by ~0.7 mm."""
    hp, view, geo, m, phi, u, v, q, sp = sc.hp, sc.view, sc.geo, sc.m, sc.phi, sc.u, sc.v, sc.q, sc.sp
    T, H, W = sc.shape
    f32 = np.float32
    L, Wb = geo["L"], geo["Wb"]
    _, myo_range, blood_range, haze_range, drops, noise_sd = QUALITY[hp["quality"]]
    tex = smooth_field(rng, (H, W), 7, 0.5, 1.5)
    e = np.broadcast_to(rng.uniform(0.06, 0.16) * tex, (T, H, W)).astype(f32).copy()
    wall_gain = _wall_gain(rng, frng, drops, T, q, v, wall_flicker)
    outer_seen, peri = m["outer_seen"], m["peri"]
    e = np.where(outer_seen & ~m["lv_seen"], rng.uniform(*myo_range) * tex, e)
    peri_seen = peri if view == "2CH" else peri & (v > -0.5 * geo["Wb_ed"])  # 4CH: septum borders the RV
    e = np.where(peri_seen, rng.uniform(0.7, 1.0) * tex, e)
    e = np.where(outer_seen | peri, e * wall_gain, e)
    e = np.where(tissue_extra, 0.45 * tex, e)
    e = np.where(blood, rng.uniform(*blood_range), e)
    for _ in range(int(rng.integers(0, 3))):  # papillary muscles: echogenic, labeled LV cavity
        pq, ps = rng.uniform(0.45, 0.75), rng.choice([-1.0, 1.0])
        pu, pv = pq * L, ps * 0.6 * Wb * profile(np.full_like(L, pq))
        pap = (((u - pu) / rng.uniform(5.0, 9.0)) ** 2 + ((v - pv) / rng.uniform(2.5, 4.0)) ** 2 <= 1) & m["lv"]
        e = np.where(pap, rng.uniform(0.25, 0.45), e)
    # mitral leaflets: closed line across the annulus in systole, open flaps into the LV in diastole
    la_b = m["la_b"]
    closed = (np.abs(u - L) < 0.9) & (np.abs(v) < la_b * 0.9)
    flaps = (np.abs(np.abs(v) - la_b * 0.8) < 0.7) & (u > L - 11.0) & (u < L)
    e = np.where(closed, np.maximum(e, 0.75 * phi), e)
    e = np.where(flaps, np.maximum(e, 0.6 * (1 - phi)), e)
    e = gaussian_filter(e, (0, 0.7 / sp, 0.7 / sp))
    return e, haze_range, noise_sd


def _speckle(rng, T: int, H: int, W: int, sp: float) -> np.ndarray:
    """Temporally correlated, spatially smoothed complex Gaussian -> Rayleigh speckle (mean 1), (T,H,W)."""
    a = 0.6
    noise = rng.standard_normal((2, T, H, W), dtype=np.float32)
    for t in range(1, T):
        noise[:, t] = a * noise[:, t - 1] + math.sqrt(1 - a * a) * noise[:, t]
    sig_r, sig_c = 0.35 / sp, 0.9 / sp
    noise = gaussian_filter(noise, (0, 0, sig_r, sig_c))
    speckle = np.hypot(noise[0], noise[1])
    speckle /= speckle.mean()
    return speckle


def _to_image(rng, e, g: dict, haze_range, noise_sd, shape) -> np.ndarray:
    """Apex haze, speckle, attenuation left by the TGC, lateral fall-off, log compression, noise: uint8."""
    T, H, W = shape
    sp = g["sp"]
    r, ang, half = g["r"], g["ang"], g["half"]
    # haze / clutter near the apex (additive, fades with depth)
    haze = rng.uniform(*haze_range) * np.exp(-r / rng.uniform(15.0, 40.0)) * smooth_field(rng, (H, W), 5, 0.3, 1.0)
    e = e + haze[None]
    speckle = _speckle(rng, T, H, W, sp)
    alpha = rng.uniform(0.008, 0.016)  # attenuation per mm (both ways)
    comp = np.exp(-alpha * r * (1 - rng.uniform(0.55, 0.9)))  # what the TGC leaves
    lateral = np.clip(1 - 0.4 * (np.abs(ang) / half) ** 4, 0, 1)
    env = e * speckle * (comp * lateral)[None]
    gain = rng.uniform(8.0, 20.0)
    img = np.log1p(gain * env) / math.log1p(gain * rng.uniform(0.6, 0.9))
    img = img + noise_sd * rng.standard_normal(img.shape, dtype=np.float32)
    img = np.clip(img, 0, 1) * g["sector"][None]
    return np.round(img * 255).astype(np.uint8)


def render_sequence(seed: int, patient: int, view: str, frames: int, size: tuple[int, int],
                    wall_flicker: float = 0.0):
    """(frames uint8 (T,H,W), labels uint8 (T,H,W), spacing mm, LV length per frame mm).

    ``wall_flicker`` in [0, 1]: 0 keeps every wall dropout fixed over the sequence (generator v1 pixels);
    > 0 makes each dropout's depth vary from frame to frame by up to that fraction and adds one such
    transient dropout per wall, as when the wall's angle to the beam changes during contraction. Drawn
    from a separate random stream, so labels and every other pixel property stay the same.
    The random draws happen in a fixed order across the helpers: v1 output is pinned by
    tests/test_data_synth_pin.py, so reorder nothing."""
    H, W = size
    T = frames
    hp = patient_params(seed, patient)
    rng = np.random.default_rng([seed, patient, 1 + VIEWS.index(view)])
    sp = hp["depth"] / H
    phi = _phase(T)
    # view geometry (mm); the transducer sits a few mm above the top row at the image centre
    geo = _view_geometry(rng, hp, view, phi)
    g = dict(_sector_grid(rng, hp, H, W, sp), sp=sp)
    u, v = _heart_frame(g, geo)
    q = np.clip(u / geo["L"], 0, 1)
    pert, pert_seen = _perturbations(rng, q, v)
    m = _left_heart(rng, hp, geo, phi, u, v, pert, pert_seen)
    blood = m["lv_seen"] | m["la_seen"]
    tissue_extra = np.zeros_like(m["lv"])
    if view == "4CH":
        rh_blood, tissue_extra = _right_heart(rng, geo, phi, u, v, m)
        blood = blood | rh_blood
    frng = np.random.default_rng([seed, patient, 100 + VIEWS.index(view)])
    scene = _Scene(hp, view, geo, m, phi, u, v, q, (T, H, W), sp)
    e, haze_range, noise_sd = _echogenicity(rng, frng, scene, blood, tissue_extra, wall_flicker)
    frames_u8 = _to_image(rng, e, g, haze_range, noise_sd, (T, H, W))
    labels = np.zeros((T, H, W), np.uint8)
    labels[m["la"]] = 3
    labels[m["myo"]] = 2
    labels[m["lv"]] = 1
    labels *= g["sector"][None].astype(np.uint8)
    return frames_u8, labels, sp, geo["L"][:, 0, 0].astype(float)


def write_patient(w: StoreWriter, seed: int, p: int, name: str, views, frames: int, size: tuple[int, int],
                      wall_flicker: float) -> None:
    seqs, areas, lengths = {}, {}, {}
    for view in views:
        fr, lab, sp, length = render_sequence(seed, p, view, frames, size, wall_flicker)
        lv_area = (lab == 1).sum(axis=(1, 2)) * sp * sp
        areas[view] = (float(lv_area[0]), float(lv_area[-1]))
        lengths[view] = (float(length[0]), float(length[-1]))
        seqs[view] = (fr, lab, sp)
    ef = area_length_ef(areas, lengths)
    target = patient_params(seed, p)["ef"] * 100
    for view, (fr, lab, sp) in seqs.items():
        w.add_sequence(f"{name}_{view}", fr, lab, np.ones(frames, bool), patient=name, view=view,
                       spacing=(sp, sp), ed=0, es=frames - 1, ef=ef, fps=frames / 0.35,
                       source=f"synthetic_echo seed={seed} patient={p}", ef_target=target,
                       image_quality=patient_params(seed, p)["quality"])
