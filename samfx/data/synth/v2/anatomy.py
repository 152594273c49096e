"""The heart of generator v2 in long-axis coordinates (u from the apex to the mitral plane, v across).

:func:`heart_shape` draws one view's heart over a sequence (per-frame sizes as (T,1,1) arrays plus
static details: wall irregularity, trabeculae, papillary muscles, dropout segments). The other
functions evaluate it at points (u, v) of any shape broadcastable with (T,1,1): :func:`labels` on the
pixel grid, :func:`reflectivity` and :func:`material_coords` on the beam grid.

Labels follow CAMUS: 1 LV cavity (trabeculae, papillary muscles and open leaflets included), 2 the
myocardium, 3 the LA up to the mitral plane; RV, RA (4CH) and pericardium are not labeled.
"""
from __future__ import annotations

import math

import numpy as np

from samfx.data.synth.common import PROFILE, Q_GRID, profile
from samfx.data.synth.v2.options import SynthV2Options
from samfx.data.synth.v2.patient import QUALITY

F32 = np.float32
_DPROFILE = np.gradient(PROFILE, Q_GRID).astype(F32)  # dP/dq, for the wall normals


def _table(rng: np.random.Generator, ks: tuple[int, ...], sd: float) -> np.ndarray:
    """(2, len(Q_GRID)) smooth random profiles in q, one per wall side (v < 0, v > 0)."""
    t = np.zeros((2, len(Q_GRID)), F32)
    for k in ks:
        t += (rng.normal(0, sd, 2)[:, None] * np.sin(k * np.pi * Q_GRID + rng.uniform(0, 2 * np.pi, 2)[:, None]))
    return t.astype(F32)


def _trabeculae_table(rng: np.random.Generator, depth_mm: float) -> np.ndarray:
    """(2, len(Q_GRID)) depth (mm) of the trabeculated layer: 7-12 ragged fingers per wall, apex to mid."""
    t = np.zeros((2, len(Q_GRID)), F32)
    for side in (0, 1):
        k = rng.uniform(22.0, 38.0)
        spikes = np.maximum(0.0, np.sin(k * Q_GRID + rng.uniform(0, 2 * np.pi))) ** 3
        spikes += 0.5 * np.maximum(0.0, np.sin(1.7 * k * Q_GRID + rng.uniform(0, 2 * np.pi))) ** 3
        t[side] = depth_mm * (0.35 + spikes) * np.clip((0.9 - Q_GRID) / 0.3, 0, 1)
    return t


def heart_shape(rng: np.random.Generator, hp: dict, vp: dict, view: str, phi: np.ndarray, valve: np.ndarray,
                opts: SynthV2Options) -> dict:
    """One view's heart over a sequence: per-frame (T,1,1) L, Wb, th, LA scale, valve opening; static details."""
    p = phi[:, None, None]
    L = vp["L_ed"] * (1 - hp["s_long"] * p)
    Wb = vp["Wb_ed"] * (1 - (1 - hp["width_ratio"]) * p)
    # incompressible myocardium: the wall thickens as the perimeter shortens
    th = np.minimum(vp["th_ed"] * (vp["L_ed"] + vp["Wb_ed"]) / (L + Wb), 1.8 * vp["th_ed"])
    qual = QUALITY[hp["quality"]]
    paps = []
    for side in rng.permutation([-1.0, 1.0])[: (int(rng.integers(1, 3)) if opts.papillary else 0)]:
        paps.append((rng.uniform(0.5, 0.68), side, rng.uniform(5.5, 9.0), rng.uniform(2.5, 3.8)))
    drops = [(rng.uniform(0.15, 1.0), rng.uniform(0.06, 0.16), rng.uniform(0.4, 0.9), rng.choice([-1.0, 1.0]))
             for _ in range(int(rng.integers(qual[4][0], qual[4][1] + 1)))]
    return dict(
        phi=p, L=L, Wb=Wb, th=th, L_ed=vp["L_ed"], Wb_ed=vp["Wb_ed"], th_ed=vp["th_ed"], tilt=vp["tilt"],
        la_g=(1 + (math.sqrt(hp["la_growth"]) - 1) * p), la_tilt=rng.uniform(-0.2, 0.2),
        la_a=hp["la_length"] / 2, la_b=hp["la_width"] / 2 * rng.uniform(0.9, 1.1),
        valve=valve[:, None, None] if opts.mitral_valve else None,
        pert=_table(rng, (1, 2, 3), 0.035), trab=_trabeculae_table(rng, 2.5 * opts.trabeculae),
        paps=paps, drops=drops, view=view, rv_w=rng.uniform(13.0, 19.0),
        myo_level=rng.uniform(0.5, 0.8) * qual[5], tex_seed=int(rng.integers(2**31)),
    )


def heart_coords(x: np.ndarray, y: np.ndarray, vp: dict) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) in mm of image points (x across from the centre, y down from the top row), apex at the origin."""
    dx, dy = x - vp["apex_x"], y - vp["apex_depth"]
    c, s = math.cos(vp["tilt"]), math.sin(vp["tilt"])
    return (dx * s + dy * c).astype(F32), (dx * c - dy * s).astype(F32)


def _walls(h: dict, u: np.ndarray, v: np.ndarray) -> dict:
    """The shared geometry: q, inner half-width, LV cavity, epicardial outline, LA (T, ...) masks."""
    L, Wb, th = h["L"], h["Wb"], h["th"]
    q = np.clip(u / L, 0.0, 1.0)
    qi = (q * (len(Q_GRID) - 1)).astype(np.int32)
    side = (v > 0).astype(np.int32)
    pert = h["pert"][side, qi]
    wi = Wb * profile(q) * (1 + pert)
    av = np.abs(v)
    lv = (u >= 0) & (u <= L) & (av <= wi)
    tha = 0.8 * th
    qo = np.clip((u + tha) / (L + tha), 0.0, 1.0)
    wo = (Wb + th) * profile(qo) * (1 + pert)
    outer = (u >= -tha) & (u <= L + 1.0) & (av <= wo)
    g = h["la_g"]
    a, b = h["la_a"] * g, h["la_b"] * g
    uc = L + 1.5 + 0.95 * a
    ct, st = math.cos(h["la_tilt"]), math.sin(h["la_tilt"])
    lu, lw = (u - uc) * ct + v * st, v * ct - (u - uc) * st
    rho = (lu / a) ** 2 + (lw / b) ** 2
    la = (rho <= 1.0) & (u > L + 1.0) & ~outer
    return dict(q=q, qi=qi, side=side, wi=wi, wo=wo, av=av, lv=lv, outer=outer, la=la, la_rho=rho, la_b=b)


def labels(h: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(T, ...) uint8 label map: 0 background, 1 LV, 2 MYO, 3 LA."""
    w = _walls(h, u, v)
    lab = np.zeros(w["lv"].shape, np.uint8)
    lab[w["la"]] = 3
    lab[w["outer"] & ~w["lv"]] = 2
    lab[w["lv"]] = 1
    return lab


def _right_heart(h: dict, u: np.ndarray, v: np.ndarray, w: dict):
    """4CH: RV and RA blood, RV free wall (image left, v < 0)."""
    L, L_ed, g = h["L"], h["L_ed"], h["la_g"]
    wrv = h["rv_w"] * (1 - 0.12 * h["phi"])
    vc = -(h["Wb_ed"] + h["th_ed"] + 0.95 * wrv)
    u0 = 0.25 * L_ed
    q = np.clip((u - u0) / (L - u0), 0, 1)
    rv = (u >= u0) & (u <= L) & (np.abs(v - vc) <= wrv * profile(q)) & ~w["outer"]
    qo = np.clip((u - u0 + 3.5) / (L - u0 + 3.5), 0, 1)
    rv_wall = (u >= u0 - 3.5) & (u <= L) & (np.abs(v - vc) <= (wrv + 3.5) * profile(qo)) & ~rv & ~w["outer"]
    ra = ((((u - (L + 22.0)) / (20.0 * g)) ** 2 + ((v - 1.05 * vc) / (17.0 * g)) ** 2 <= 1)
          & (u > L + 2.0) & ~w["outer"] & ~w["la"])
    return rv | ra, rv_wall


def _leaflets(h: dict, u: np.ndarray, v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Mitral leaflets: two 1.6 mm thick segments hinged at the annulus (u = L, v = ±a). Closed they meet
    on the axis, bulging a little toward the LA; open they swing toward the apex (80° at full opening)."""
    out = np.zeros(np.broadcast_shapes(u.shape, h["L"].shape), bool)
    for sgn, length in ((1.0, 1.15), (-1.0, 0.95)):  # anterior (longer), posterior
        ell = length * a
        closed = np.arccos(np.clip(a / ell, -1, 1))  # angle toward the LA that reaches the axis
        beta = closed * (1 - h["valve"]) - math.radians(80.0) * h["valve"]
        du, dv = np.sin(beta), -sgn * np.cos(beta)  # from the hinge (L, sgn*a) toward the axis / apex
        pu, pv = u - h["L"], v - sgn * a
        s = np.clip(pu * du + pv * dv, 0, ell)
        out |= (pu - s * du) ** 2 + (pv - s * dv) ** 2 <= 0.8**2
    return out


def _specular(h: dict, w: dict, v: np.ndarray, beam: tuple[np.ndarray, np.ndarray], amount: float) -> np.ndarray:
    """Echo factor of a wall by its angle to the beam: 1 where the wall faces the beam, 1 - amount where it
    runs parallel to it (lateral dropout in apical views)."""
    slope = h["Wb"] * _DPROFILE[w["qi"]] / h["L"]  # dv/du of the wall at q
    sgn = np.where(v > 0, 1.0, -1.0).astype(F32)
    norm = np.sqrt(1 + slope * slope)
    nu, nv = -sgn * slope / norm, sgn / norm
    c, s = math.cos(h["tilt"]), math.sin(h["tilt"])
    nx, ny = nu * s + nv * c, nu * c - nv * s
    cos_inc = np.abs(nx * beam[0] + ny * beam[1])
    return (1 - amount * (1 - cos_inc) ** 2).astype(F32)


def reflectivity(h: dict, u: np.ndarray, v: np.ndarray, beam: tuple[np.ndarray, np.ndarray], tex: np.ndarray,
                 opts: SynthV2Options, quality: str) -> tuple[np.ndarray, np.ndarray]:
    """(tissue, blood): (T, ...) backscatter of tissue (myocardium ~ myo_level) and the blood mask."""
    w = _walls(h, u, v)
    L, lv, outer, av = h["L"], w["lv"], w["outer"], w["av"]
    m = h["myo_level"]
    e = np.broadcast_to(0.035 * m * tex, lv.shape).astype(F32)
    gain = _specular(h, w, v, beam, min(0.95, opts.specular_dropout * QUALITY[quality][3]))
    for c, width, loss, side in h["drops"]:  # extra weak segments (poor windows)
        gain = np.where(v * side > 0, gain * (1 - loss * np.exp(-(((w["q"] - c) / width) ** 2))), gain)
    myo = outer & ~lv
    e = np.where(myo, m * tex * gain, e)
    peri = (av <= w["wo"] + 2.5) & ~outer & (u <= L - 5.0) & (u >= -0.8 * h["th"] - 2.5)
    if h["view"] == "4CH":  # the septum borders the RV: no pericardium there
        peri &= v > -0.5 * h["Wb_ed"]
    e = np.where(peri, 1.6 * m * tex * gain, e)
    la_wall = (w["la_rho"] <= 1.25) & ~w["la"] & ~outer & (u > L)
    e = np.where(la_wall, 0.45 * m * tex, e)
    blood = lv | w["la"]
    if h["view"] == "4CH":
        rh_blood, rv_wall = _right_heart(h, u, v, w)
        e = np.where(rv_wall, 0.7 * m * tex * gain, e)
        blood |= rh_blood
    trab = lv & (av > w["wi"] - h["trab"][w["side"], w["qi"]])
    for pq, side, length, width in h["paps"]:  # papillary muscles: shorten and thicken in systole
        pu = pq * L
        pv = side * 0.7 * h["Wb"] * profile(np.full_like(L, pq))
        trab |= lv & (((u - pu) / (length * (1 - 0.15 * h["phi"]))) ** 2
                      + ((v - pv) / (width * (1 + 0.3 * h["phi"]))) ** 2 <= 1)
    e = np.where(trab, 0.4 * m * tex, e)
    if h["valve"] is not None:
        leaf = _leaflets(h, u, v, np.minimum(0.8 * h["Wb"] * profile(np.ones_like(L)), w["la_b"]))
        e = np.where(leaf & ~outer, 1.1 * m, e)
        trab |= leaf
    return np.where(blood & ~trab, 0.0, e).astype(F32), blood & ~trab


def material_coords(h: dict, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u0, v0): where the tissue now at (u, v) was at ED. The cavity scales with L and Wb, the wall keeps
    its material (thickening), tissue beyond moves with it and comes to rest ~20 mm away; beyond the
    mitral plane the annulus motion fades over ~40 mm (the apex stays put)."""
    L, Wb, th = h["L"], h["Wb"], h["th"]
    L0, Wb0, th0 = h["L_ed"], h["Wb_ed"], h["th_ed"]
    P = profile(np.clip(u / L, 0.0, 1.0))
    av = np.abs(v)
    wi = Wb * P
    v0 = np.where(av <= wi, av * (Wb0 / Wb), np.where(av <= wi + th, Wb0 * P + (av - wi) * (th0 / th),
                                                       Wb0 * P + th0 + (av - wi - th)))
    fade = np.exp(-np.clip(av - wi - th, 0, None) / 20.0)
    v0 = np.sign(v) * (av + (v0 - av) * fade)
    u0 = np.where(u <= L, u * (L0 / L), u + (L0 - L) * np.exp(-(u - L) / 40.0))
    u0 = u + (u0 - u) * np.exp(-np.clip(av - Wb - th, 0, None) / 20.0)
    return u0.astype(F32), v0.astype(F32)
