"""Clinical read-outs on masks with known geometry: areas, long axis, area-length volume, ED/ES, EF."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from samfx.engine.eval.clinical import (
    ClinicalError,
    analyze_clip,
    area_jitter,
    area_length_volume,
    area_tracking,
    biplane_volume,
    detect_ed_es,
    ef_errors,
    ejection_fraction,
    long_axis_length,
    lv_areas,
)


def ellipse(a_mm, b_mm, spacing=(0.5, 0.5), size=(160, 160), angle_deg=0.0, center=None):
    """Bool mask of an ellipse with semi-axes a (long) and b in mm; long axis `angle_deg` from the rows."""
    sy, sx = spacing
    h, w = size
    cy, cx = center or (h * sy / 2 + 0.3, w * sx / 2 - 0.2)   # off-grid centre: no lucky alignment
    y, x = np.meshgrid((np.arange(h)) * sy, (np.arange(w)) * sx, indexing="ij")
    t = math.radians(angle_deg)
    u = (y - cy) * math.cos(t) + (x - cx) * math.sin(t)
    v = -(y - cy) * math.sin(t) + (x - cx) * math.cos(t)
    return (u / a_mm) ** 2 + (v / b_mm) ** 2 <= 1


def spheroid_ml(a, b):
    return 4 / 3 * math.pi * a * b * b / 1000


@pytest.mark.parametrize("spacing, angle", [((0.5, 0.5), 0.0), ((0.45, 0.3), 30.0), ((0.3, 0.6), -60.0)])
def test_ellipse_area_length_and_volume(spacing, angle):
    a, b = 24.0, 12.0
    m = ellipse(a, b, spacing, size=(int(70 / spacing[0]), int(70 / spacing[1])), angle_deg=angle)
    area = float(lv_areas(m[None], spacing)[0])
    assert area == pytest.approx(math.pi * a * b, rel=0.01)
    length = long_axis_length(m, spacing)
    assert abs(length - 2 * a) < 0.6 * max(spacing)
    # the area-length formula is exact for a prolate spheroid: V = 4/3 pi a b^2
    assert area_length_volume(area, length) == pytest.approx(spheroid_ml(a, b), rel=0.015)


def test_ef_from_two_ellipses_within_two_points():
    sp = (0.4, 0.35)
    ed, es = ellipse(24, 12, sp, (180, 200), 10), ellipse(21, 8, sp, (180, 200), 10)
    true_ef = 100 * (1 - spheroid_ml(21, 8) / spheroid_ml(24, 12))
    assert true_ef == pytest.approx(61.11, abs=0.01)
    res = analyze_clip(np.stack([ed, es]), sp)
    assert (res.ed, res.es) == (0, 1)
    assert abs(res.ef - true_ef) < 2.0
    err = ef_errors([res.ef], [true_ef])
    assert err["n"] == 1 and err["mae"] < 2.0 and err["n_undefined"] == 0


def test_ed_es_detection_from_area_curve_and_label_maps():
    sp = (0.5, 0.5)
    bs = [10, 11, 12, 11.5, 10, 9, 7, 8, 9]          # max at 2, min at 6
    labels = np.stack([ellipse(22, b, sp, (120, 120)).astype(np.uint8) * 1 for b in bs])
    labels[:, :5] = 2                                  # other classes are ignored
    res = analyze_clip(torch.from_numpy(labels), torch.tensor(sp))
    assert (res.ed, res.es) == (2, 6)
    assert detect_ed_es(res.areas) == (2, 6)
    assert np.all(np.diff(res.areas[:3]) > 0) and res.volumes.shape == (9,)
    fixed = analyze_clip(labels, sp, ed=0, es=8)
    assert (fixed.ed, fixed.es) == (0, 8)
    assert fixed.ef == pytest.approx(ejection_fraction(fixed.volumes[0], fixed.volumes[8]))
    assert analyze_clip(labels == 1, sp).ef == pytest.approx(res.ef)   # bool masks == label maps


def test_long_axis_of_synthetic_bullet_matches_generator():
    """The synthetic LV is a bullet (apex .. flat mitral plane); its generator knows the true length."""
    from samfx.data.synth.v1 import render_sequence

    for patient in (1, 3):
        _, labels, sp, lengths = render_sequence(0, patient, "4CH", 3, (192, 216))
        for t in range(3):
            got = long_axis_length(labels[t] == 1, (sp, sp))
            assert abs(got - lengths[t]) < 1.6 * sp, (patient, t, got, lengths[t])


def test_biplane_matches_single_plane_for_identical_views():
    assert biplane_volume(600.0, 600.0, 50.0, 55.0) == pytest.approx(area_length_volume(600.0, 50.0))
    assert area_length_volume(600.0, 50.0) == pytest.approx(8 * 600 ** 2 / (3 * math.pi * 50) / 1000)


def test_empty_lv_gives_nan_ef_that_is_counted():
    masks = np.zeros((3, 32, 32), np.uint8)
    res = analyze_clip(masks, (1.0, 1.0))
    assert res.areas.tolist() == [0, 0, 0] and res.edv == 0.0 and math.isnan(res.ef)
    err = ef_errors([res.ef, 50.0], [55.0, 52.0])
    assert err == {"abs_error": [pytest.approx(float("nan"), nan_ok=True), 2.0], "mae": 2.0, "bias": -2.0,
                   "n": 1, "n_undefined": 1}


def test_area_jitter():
    true = np.array([100.0, 110, 130, 150, 140, 120])
    assert area_jitter(true + 7, true) == 0.0
    noisy = true + np.array([0, 5, -5, 5, -5, 0])
    assert area_jitter(noisy, true) == pytest.approx(np.mean([5, 10, 10, 10, 5]))
    assert area_jitter(np.arange(6) * 3.0) == 0.0          # smooth (linear) motion: no jitter
    assert area_jitter(noisy) > area_jitter(true)


def test_area_tracking_splits_damping_from_noise():
    true = np.array([3000.0, 2900, 2700, 2500, 2300, 2100, 2000])
    damped = 0.6 * true + 900                     # follows 60 % of the motion, no noise
    fit = area_tracking(damped, true)
    assert fit.gain == pytest.approx(0.6) and fit.offset == pytest.approx(900)
    assert fit.residual_jitter == pytest.approx(0.0, abs=1e-9)
    assert area_jitter(damped, true) == pytest.approx(0.4 * np.abs(np.diff(true)).mean())
    noise = np.array([0.0, 20, -20, 20, -20, 20, 0])
    noisy = area_tracking(true + noise, true)
    assert noisy.residual_jitter > 20 and noisy.gain == pytest.approx(1.0, abs=0.05)
    flat = area_tracking(np.full(4, 5.0), np.full(4, 7.0))       # no true motion: gain undefined
    assert np.isnan(flat.gain) and flat.residual_jitter == 0.0
    with pytest.raises(ClinicalError, match="area_tracking: 3 predicted areas but 2 true areas"):
        area_tracking(np.ones(3), np.ones(2))


@pytest.mark.parametrize("call, msg", [
    (lambda: lv_areas(np.zeros((2, 4, 4)), (0.5, float("nan"))), r"lv_areas: spacing must be \(row_mm, col_mm\) > 0"),
    (lambda: lv_areas(np.zeros((2, 4, 4)), (1.0,)), r"spacing must be \(row_mm, col_mm\) > 0, got \[1.0\]"),
    (lambda: analyze_clip(np.zeros((2, 2, 4, 4)), (1, 1)), r"analyze_clip: masks must be \(T,H,W\)"),
    (lambda: analyze_clip(np.ones((2, 4, 4)), (1, 1), ed=5), r"analyze_clip: ed=5 is outside the 2 frames"),
    (lambda: ef_errors([1, 2], [1]), "ef_errors: 2 predicted EFs but 1 ground-truth EFs"),
    (lambda: detect_ed_es([]), "detect_ed_es: need a non-empty, finite area curve"),
])
def test_bad_inputs_raise_one_line_errors(call, msg):
    with pytest.raises(ClinicalError, match=msg):
        call()


def test_ef_of_synthetic_ground_truth_matches_the_generator():
    """The synthetic generator stores a biplane area-length EF from its true lengths; ours, from the
    masks alone (estimated long axis, detected ED/ES), must agree."""
    from samfx.data.synth.common import area_length_ef as _ef
    from samfx.data.synth.v1 import render_sequence

    areas, lengths, ours = {}, {}, {}
    for view in ("2CH", "4CH"):
        _, labels, sp, true_len = render_sequence(0, 2, view, 6, (192, 216))
        res = analyze_clip(labels, (sp, sp))
        assert (res.ed, res.es) == (0, 5)
        areas[view] = (res.areas[0], res.areas[-1])
        lengths[view] = (true_len[0], true_len[-1])
        ours[view] = res
    truth = _ef(areas, lengths)
    vols = [biplane_volume(ours["2CH"].areas[i], ours["4CH"].areas[i], ours["2CH"].lengths[i],
                           ours["4CH"].lengths[i]) for i in (0, -1)]
    assert ejection_fraction(*vols) == pytest.approx(truth, abs=0.5)
    for view in ("2CH", "4CH"):                       # single plane: a different method, still close
        assert abs(ours[view].ef - truth) < 2.0, (view, ours[view].ef, truth)
