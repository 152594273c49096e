"""One generator-v2 sequence: anatomy -> labels on the pixel grid, acoustics -> frames via the beam grid."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from samfx.data.synth.common import VIEWS, area_length_ef, smooth_field
from samfx.data.synth.v2 import acoustics, anatomy
from samfx.data.synth.v2.options import SynthV2Options, v2_options
from samfx.data.synth.v2.patient import QUALITY, cycle, patient_params, view_params

F32 = np.float32


@dataclass
class Sequence:
    frames: np.ndarray      # (T, H, W) uint8
    labels: np.ndarray      # (T, H, W) uint8: 0 bg, 1 LV, 2 MYO, 3 LA (inside the sector)
    spacing: float          # mm per pixel (rows and columns)
    length: np.ndarray      # (T,) LV long-axis length (mm), for the area-length volume
    ed: int
    es: int
    fps: float
    quality: str
    full_cycle: bool


def _pixel_grid(H: int, W: int, sp: float) -> tuple[np.ndarray, np.ndarray]:
    """(y (H,1), x (1,W)) pixel centres in mm: y down from the top row, x across from the centre."""
    y = ((np.arange(H, dtype=F32) + 0.5) * sp)[:, None]
    x = ((np.arange(W, dtype=F32) + 0.5 - W / 2) * sp)[None, :]
    return y, x


def _rib(rng: np.random.Generator, half: float, opts: SynthV2Options) -> tuple[float, float, float] | None:
    """(depth mm, beam angle, half-width) of a rib near one sector edge, with probability opts.shadow."""
    if rng.random() >= opts.shadow:
        return None
    return rng.uniform(8.0, 20.0), float(rng.choice([-1.0, 1.0]) * rng.uniform(0.45, 0.8) * half), \
        rng.uniform(0.05, 0.11)


def _scatter(rng, h: dict, hp: dict, vp: dict, g: dict, opts: SynthV2Options, T: int):
    """(2,T,Nr,Nb) complex scatter signal after the PSF, its blood mask and the rib (or None)."""
    ub, vb = anatomy.heart_coords(g["x"], g["y"], vp)
    ub, vb = ub[None], vb[None]
    tex = smooth_field(rng, g["x"].shape, 8, 0.55, 1.45)
    tissue, blood = anatomy.reflectivity(h, ub, vb, g["beam"], tex, opts, hp["quality"])
    rib = _rib(rng, g["half"], opts)
    if rib is not None:  # the rib itself is a strong reflector
        depth, angle, width = rib
        blob = np.exp(-(((g["theta"] - angle) / width) ** 8) - ((g["r"] - depth) / 2.0) ** 2)
        tissue = tissue + (4.0 * h["myo_level"] * blob).astype(F32)
    u0, v0 = anatomy.material_coords(h, ub, vb)
    field = acoustics.tissue_field(rng, u0, v0)
    widen = QUALITY[hp["quality"]][0]
    norm = 1.0 / np.sqrt((acoustics.psf(field[:, :1], g, opts, widen) ** 2).mean(axis=(0, 1, 3)) + 1e-12)
    sig = field * np.sqrt(tissue)[None]
    blood_amp = math.sqrt(h["myo_level"] * 10 ** (opts.blood_echo_db / 10))
    if opts.blood_correlation < 1:
        bf = acoustics.blood_field(rng, tissue.shape, opts.blood_correlation)
    else:  # fully correlated blood: carried like tissue
        bf = field
    sig = sig + bf * (blood_amp * blood)[None]
    sig = acoustics.psf(sig, g, opts, widen) * norm[None, None, :, None].astype(F32)
    return sig, blood, rib


def _display(rng, h: dict, hp: dict, g: dict, opts: SynthV2Options, T: int) -> tuple[np.ndarray, np.ndarray]:
    """((T,Nr,Nb) display values in [0, 1], blood mask): attenuation, clutter, noise, TGC, log compression."""
    sig, blood, rib = _scatter(rng, h, hp, h["vp"], g, opts, T)
    sig = sig * acoustics.transmission(g, np.broadcast_to(blood, sig.shape[1:]), opts, rib)[None]
    qual = QUALITY[hp["quality"]]
    m = math.sqrt(h["myo_level"])
    if opts.clutter > 0:
        sig = sig + acoustics.clutter(rng, g, T, 0.6 * m * opts.clutter * qual[1])
    nepers = opts.attenuation_db_cm_mhz * opts.frequency_mhz / 10.0 / 8.686
    tgc = np.exp(2 * opts.tgc * rng.uniform(0.9, 1.05) * nepers * g["r"]).astype(F32)  # (Nr,1)
    if opts.noise > 0:  # electronic noise enters before the TGC, so it grows with depth
        level = 10 ** (-42 / 20) * m * opts.noise * qual[2]
        sig = sig + level * rng.standard_normal(sig.shape, dtype=F32) / tgc[None, None]
    env = np.hypot(sig[0], sig[1]) * tgc[None]
    env *= 1 - 0.35 * (np.abs(g["theta"]) / g["half"]) ** 4  # element directivity at the sector edges
    ref = 1.25 * m * 10 ** (20 / 20)  # myocardium sits ~20 dB below white
    return acoustics.log_compress(env, ref, hp["gain_db"], hp["dynamic_range_db"]), blood


def render_sequence(seed: int, patient: int, view: str, frames: int, size: tuple[int, int],
                    opts: SynthV2Options | dict | None = None) -> Sequence:
    """Generator v2: one (seed, patient, view) sequence of `frames` frames of `size` (H, W) pixels."""
    opts = v2_options(opts)
    H, W = (int(s) for s in size)
    T = int(frames)
    hp = patient_params(seed, patient, opts)
    rng = np.random.default_rng([seed, patient, 21 + VIEWS.index(view)])
    vp = view_params(rng, hp, view)
    phi, valve, es, seconds = cycle(T, hp)
    h = anatomy.heart_shape(rng, hp, vp, view, phi, valve, opts)
    h["vp"] = vp
    sp = hp["depth"] / H
    half = math.radians(hp["half_angle"])
    y, x = _pixel_grid(H, W, sp)
    u, v = anatomy.heart_coords(x, y, vp)
    r, ang = np.hypot(x, y - vp["y0"]), np.arctan2(x, y - vp["y0"])
    sector = (np.abs(ang) <= half) & (r < hp["depth"] - 2.0)
    labels = anatomy.labels(h, u[None], v[None]) * sector[None].astype(np.uint8)
    g = acoustics.beam_grid(hp["depth"], half, vp["y0"], H, opts.beams)
    display, _ = _display(rng, h, hp, g, opts, T)
    img = acoustics.scan_convert(display, g, np.broadcast_to(x, (H, W)), np.broadcast_to(y, (H, W)))
    full = hp["full_cycle"] and T >= 5
    fps = (T if full else max(T - 1, 1)) / seconds
    return Sequence(img, labels, sp, h["L"][:, 0, 0].astype(float), 0, es, float(fps), hp["quality"], full)


def write_patient(w, seed: int, p: int, name: str, views, frames: int, size: tuple[int, int],
                  opts: SynthV2Options) -> None:
    """Render a patient's views and add them to StoreWriter `w`, with the biplane area-length EF measured
    on the LV labels at ED and ES (the sampled EF is kept as ef_target)."""

    seqs, areas, lengths = {}, {}, {}
    for view in views:
        s = render_sequence(seed, p, view, frames, size, opts)
        lv_area = (s.labels == 1).sum(axis=(1, 2)) * s.spacing * s.spacing
        areas[view] = (float(lv_area[s.ed]), float(lv_area[s.es]))
        lengths[view] = (float(s.length[s.ed]), float(s.length[s.es]))
        seqs[view] = s
    ef = area_length_ef(areas, lengths)
    hp = patient_params(seed, p, opts)
    for view, s in seqs.items():
        w.add_sequence(f"{name}_{view}", s.frames, s.labels, np.ones(frames, bool), patient=name, view=view,
                       spacing=(s.spacing, s.spacing), ed=s.ed, es=s.es, ef=ef, fps=s.fps,
                       source=f"synthetic_echo v2 seed={seed} patient={p}", ef_target=hp["ef"] * 100,
                       image_quality=s.quality, cycle="full" if s.full_cycle else "half",
                       heart_rate=hp["heart_rate"])
