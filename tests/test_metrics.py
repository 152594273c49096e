"""Metrics pinned against independent computations (brute-force point distances, scipy EDT)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from samfx.engine.eval import metrics as M


def _border_points(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels (4-neighbour definition) computed by explicit neighbour checks."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[1:-1, 1:-1]
    all_in = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return np.argwhere(inner & ~all_in).astype(float)


def _brute_hd(pred, gt, spacing, q=100.0):
    a = _border_points(pred) * np.asarray(spacing)
    b = _border_points(gt) * np.asarray(spacing)
    d = cdist(a, b)
    d_ab, d_ba = d.min(1), d.min(0)
    return max(np.percentile(d_ab, q), np.percentile(d_ba, q))


def _edt_hd(pred, gt, spacing, q=100.0):
    """Independent distance-transform version: distance to the *mask* outside, then boundary."""
    def border(m):
        return m & (ndimage.distance_transform_edt(np.pad(m, 1)) [1:-1, 1:-1] <= 1.0)
    bp, bg = border(pred), border(gt)
    d_pg = ndimage.distance_transform_edt(~bg, sampling=spacing)[bp]
    d_gp = ndimage.distance_transform_edt(~bp, sampling=spacing)[bg]
    return max(np.percentile(d_pg, q), np.percentile(d_gp, q))


def _random_blob(rng, shape, n=3):
    m = np.zeros(shape, bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(2, shape[0] / 3), rng.uniform(2, shape[1] / 3)
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return m


CASES = [((37, 53), (0.31, 0.77)), ((64, 64), (1.0, 1.0)), ((80, 29), (0.5, 0.2)), ((41, 70), None)]


@pytest.mark.parametrize("shape,spacing", CASES)
def test_hd_and_hd95_match_independent_computations(shape, spacing):
    rng = np.random.default_rng(sum(shape))
    sp = spacing or (1.0, 1.0)
    for _ in range(5):
        p, g = _random_blob(rng, shape), _random_blob(rng, shape)
        if not p.any() or not g.any():
            continue
        for q, fn in ((100.0, M.hausdorff), (95.0, M.hd95)):
            got = fn(p, g, spacing)
            assert got == pytest.approx(_brute_hd(p, g, sp, q), abs=1e-6)
            assert got == pytest.approx(_edt_hd(p, g, sp, q), abs=1e-6)
        out = M.binary_metrics(p, g, spacing)
        assert out["hd"] == pytest.approx(_brute_hd(p, g, sp), abs=1e-6)
        assert out["hd95"] == pytest.approx(_brute_hd(p, g, sp, 95.0), abs=1e-6)
        assert out["hd95"] <= out["hd"] + 1e-12


def test_known_values_non_square_anisotropic():
    p = np.zeros((5, 9), bool)
    g = np.zeros((5, 9), bool)
    p[1, 1] = True
    g[4, 8] = True
    # rows differ by 3 (x 2 mm), columns by 7 (x 0.5 mm)
    assert M.hausdorff(p, g, (2.0, 0.5)) == pytest.approx(math.hypot(6.0, 3.5), abs=1e-12)
    assert M.hausdorff(p, g) == pytest.approx(math.hypot(3, 7), abs=1e-12)
    # transposing the geometry must transpose the spacing
    assert M.hausdorff(p.T, g.T, (0.5, 2.0)) == pytest.approx(math.hypot(6.0, 3.5), abs=1e-12)


def test_dice_iou_values():
    p = np.zeros((4, 6), bool)
    g = np.zeros((4, 6), bool)
    p[:2, :3] = True   # 6 px
    g[:2, 1:5] = True  # 8 px, overlap 4
    assert M.dice(p, g) == pytest.approx(2 * 4 / 14)
    assert M.iou(p, g) == pytest.approx(4 / 10)


def test_empty_mask_policy():
    e = np.zeros((6, 7), bool)
    f = e.copy()
    f[2:4, 2:5] = True
    both = M.binary_metrics(e, e, (0.5, 0.5))
    assert both == {"dice": 1.0, "iou": 1.0, "hd": 0.0, "hd95": 0.0}
    for p, g in ((e, f), (f, e)):
        one = M.binary_metrics(p, g, (0.5, 0.5))
        assert one["dice"] == 0.0 and one["iou"] == 0.0
        assert math.isinf(one["hd"]) and math.isinf(one["hd95"])
    s = M.stats([1.0, math.inf, 3.0])
    assert s == {"mean": 2.0, "std": 1.0, "n": 2, "n_inf": 1}
    assert M.stats([math.inf]) == {"mean": None, "std": None, "n": 0, "n_inf": 1}
    from samfx.data.files import jsonable  # reports are written through it: inf / NaN become JSON null

    assert jsonable(math.inf) is None
    assert jsonable({"a": [1.0, math.nan, (math.inf, 2)], "b": None}) == {"a": [1.0, None, [None, 2]], "b": None}


def test_unknown_spacing_means_pixels():
    p = np.zeros((5, 5), bool)
    g = np.zeros((5, 5), bool)
    p[0, 0] = g[0, 4] = True
    assert M.hausdorff(p, g, (float("nan"), float("nan"))) == 4.0
    assert M.hausdorff(p, g, (0.0, 0.0)) == 4.0
    assert M.distance_unit((float("nan"), 1.0)) == "px"
    assert M.distance_unit((0.3, 0.3)) == "mm"


def test_bad_inputs():
    with pytest.raises(ValueError, match="shapes differ"):
        M.dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2-D mask"):
        M.dice(np.zeros((3,)), np.zeros((3,)))


def test_row_hd_compat_is_row_hamming_times_255():
    p = np.zeros((3, 4), bool)
    g = np.zeros((3, 4), bool)
    p[0, :2] = True        # rows: [1100],[0000],[0000]
    g[2, :] = True         # rows: [0000],[0000],[1111]
    # p rows -> nearest g row: [1100]->[0000]:2 ; g row [1111] -> nearest p row [1100]: 2
    assert M.row_hd_compat(p, g) == 255 * 2
    # a shift that a geometric HD sees as 1 px can be large here: it is not a distance
    a = np.zeros((8, 8), bool)
    a[2:6, 2:6] = True
    b = np.roll(a, 1, axis=1)
    assert M.hausdorff(a, b) == 1.0
    assert M.row_hd_compat(a, b) == 255 * 2


def test_label_metrics_and_summary():
    gt = np.zeros((10, 12), np.int64)
    gt[2:6, 2:6] = 1
    gt[6:9, 3:9] = 2
    pred = gt.copy()
    pred[6:9, 3:9] = 0  # class 2 missing
    per = M.label_metrics(pred, gt, [1, 2], spacing=(0.5, 0.5))
    assert per[1]["dice"] == 1.0 and per[1]["hd"] == 0.0
    assert per[2]["dice"] == 0.0 and math.isinf(per[2]["hd"])
    names = {1: "LV", 2: "MYO"}
    recs = [{"patient": "p1", "classes": {names[c]: v for c, v in per.items()}},
            {"patient": "p1", "classes": {names[c]: M.label_metrics(gt, gt, [c])[c] for c in (1, 2)}},
            {"patient": "p2", "classes": {names[c]: M.label_metrics(gt, gt, [c])[c] for c in (1, 2)}}]
    s = M.summarize(recs, names)
    assert s["per_image"]["MYO"]["dice"]["mean"] == pytest.approx(2 / 3)
    assert s["per_image"]["MYO"]["hd"] == {"mean": 0.0, "std": 0.0, "n": 2, "n_inf": 1}
    # p1's MYO: dice mean of (0, 1); HD: the finite one (0); patients average that
    assert s["per_patient"]["MYO"]["dice"]["mean"] == pytest.approx(0.75)
    assert [p["n_images"] for p in s["patients"]] == [2, 1]
    assert s["mean"]["dice"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_dice_agrees_with_torchmetrics_when_explicit():
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.segmentation import dice_score

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, size=(2, 20, 30))
    pred = np.where(rng.random(gt.shape) < 0.8, gt, rng.integers(0, 4, size=gt.shape))
    tm = dice_score(torch.as_tensor(pred), torch.as_tensor(gt), num_classes=4, include_background=False,
                    average="none", input_format="index")
    ours = np.array([[M.dice(pred[i] == c, gt[i] == c) for c in (1, 2, 3)] for i in range(2)])
    np.testing.assert_allclose(tm.numpy(), ours, atol=1e-6)
