"""`samfx report`: the numbers (bootstrap CIs, ranking, Bland–Altman), the drawing (contours), the page
(self-contained, sortable), the CLI contract, and a check in headless Chromium that the page renders."""
from __future__ import annotations

import base64
import io
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from samfx.engine.testing import toy_plugins
from samfx.report import figures as F
from samfx.report import stats as S
from samfx.report.collect import RunData
from samfx.report.html import img, page, table
from samfx.report.page import render
from tests.cli_inprocess import cli, one_line
from tests.toy_runs import train_toy

STM = ["model.temporal.name=stm", "data.clip_length=3", "data.batch_size=1", "data.train_split=test",
       "data.val_split=test", "train.stages.0.max_steps=2"]


@pytest.fixture(scope="module")
def plugins():
    return toy_plugins()


@pytest.fixture(scope="module")
def toy_run(plugins, tmp_path_factory):
    """A toy run with a space-time memory, evaluated on its test split (6 images, 1 sequence of 6 frames)."""
    from samfx import api

    run = train_toy(tmp_path_factory.mktemp("report") / "run", plugins, *STM)
    api.evaluate(run, split="test", device="cpu", registry=plugins.registry)
    return run


@pytest.fixture(scope="module")
def report_html(plugins, toy_run):
    from samfx import api

    return api.report(toy_run, registry=plugins.registry)


# -- numbers ---------------------------------------------------------------------------------------
def test_bootstrap_ci_on_known_inputs():
    # two patients, 0 and 1: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    assert S.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert S.bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))
    assert S.bootstrap_ci([0.5]) is None and S.bootstrap_ci([]) is None
    # many patients: close to the normal interval mean ± 1.96 SD / sqrt(n)
    v = np.random.default_rng(1).normal(0.8, 0.1, 400)
    lo, hi = S.bootstrap_ci(v)
    half = 1.96 * v.std(ddof=1) / math.sqrt(v.size)
    assert lo == pytest.approx(v.mean() - half, abs=0.15 * half)
    assert hi == pytest.approx(v.mean() + half, abs=0.15 * half)
    assert S.bootstrap_ci(v) == (lo, hi)  # fixed seed: the page does not change between runs


def test_class_table_is_over_patients_and_counts_infinite_hd():
    patients = [{"patient": p, "classes": {"LV": {"dice": d, "iou": d / 2, "hd": h, "hd95": h}}}
                for p, d, h in (("a", 0.9, 2.0), ("b", 0.7, None), ("c", 0.8, 4.0))]
    ci = S.class_table({"classes": ["LV"], "patients": patients})["LV"]
    assert ci["dice"]["mean"] == pytest.approx(0.8) and ci["dice"]["n"] == 3 and ci["dice"]["n_inf"] == 0
    assert ci["dice"]["lo"] == pytest.approx(S.bootstrap_ci([0.9, 0.7, 0.8])[0])
    assert ci["hd"]["mean"] == pytest.approx(3.0) and ci["hd"]["n"] == 2 and ci["hd"]["n_inf"] == 1
    assert (ci["hd"]["lo"], ci["hd"]["hi"]) == pytest.approx((2.0, 4.0))


def test_worst_and_best_never_share_an_image():
    dices = [0.9, 0.1, 0.5, 0.7]
    images = [{"id": i, "classes": {"A": {"dice": d}, "B": {"dice": d / 2}}} for i, d in enumerate(dices)]
    worst, best = S.rank_images(images, k=3)
    assert [r["id"] for r in worst] == [1, 2, 3] and [r["id"] for r in best] == [0]
    assert S.image_score(images[0]) == pytest.approx(0.675)


def test_bland_altman_bias_and_limits():
    ba = S.bland_altman([50.0, 60.0, 70.0, math.nan], [48.0, 61.0, 66.0, 55.0])
    diff = np.array([2.0, -1.0, 4.0])
    assert ba["n"] == 3 and ba["n_undefined"] == 1 and ba["diff"] == diff.tolist()
    assert ba["bias"] == pytest.approx(diff.mean())
    assert ba["loa"] == pytest.approx((diff.mean() - 1.96 * diff.std(ddof=1), diff.mean() + 1.96 * diff.std(ddof=1)))
    assert ba["mean"] == [49.0, 60.5, 68.0]


# -- drawing ---------------------------------------------------------------------------------------
def test_overlay_draws_prediction_and_truth_contours():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = np.zeros((32, 32), np.uint8)
    gt[8:18, 10:20] = 1
    pred = np.roll(gt, 3, axis=1)
    pred[25:28, 2:5] = 2
    fig, ax = plt.subplots()
    drawn = F.draw_overlay(ax, np.full((32, 32), 0.5), pred, gt, [1, 2])
    plt.close(fig)
    assert set(drawn) == {("truth", 1), ("pred", 1), ("pred", 2)}  # no truth of class 2: nothing drawn
    verts = np.concatenate([p.vertices for p in drawn[("truth", 1)].get_paths()])
    # the 0.5 level of a 10x10 block of pixels runs along its pixel edges: rows 7.5..17.5, cols 9.5..19.5
    assert verts[:, 0].min() == pytest.approx(9.5) and verts[:, 0].max() == pytest.approx(19.5)
    assert verts[:, 1].min() == pytest.approx(7.5) and verts[:, 1].max() == pytest.approx(17.5)
    pv = np.concatenate([p.vertices for p in drawn[("pred", 1)].get_paths()])
    assert pv[:, 0].min() == pytest.approx(12.5)
    truth_style, pred_style = drawn[("truth", 1)].get_linestyles()[0], drawn[("pred", 1)].get_linestyles()[0]
    assert truth_style != pred_style and truth_style[1] is not None  # truth dashed, prediction solid
    png = base64.b64decode(F.overlay_png(np.full((32, 32), 0.5), pred, gt, [1, 2]))
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 110) & (rgb[..., 2] < 110)  # class 1's colour, as a line
    assert 0 < red.mean() < 0.1


# -- the page --------------------------------------------------------------------------------------
def test_sortable_table_markup():
    html = table(["patient", "Dice %"], [["<td class=\"l\">a</td>", '<td data-v="0.5">50.0</td>']], cls="sortable")
    assert '<table class="sortable">' in html
    assert 'data-col="0" data-type="text"' in html and 'data-col="1" data-type="num"' in html
    doc = page("t", html)
    assert "function sortTable(th)" in doc and "addEventListener('click'" in doc


def _sequence_report() -> dict:
    cls = {"LV": {"dice": 0.9, "iou": 0.8, "hd": 2.0, "hd95": 1.5}}
    seqs = [{"id": f"s{i}", "frames": 4, "dice": {"LV": 0.9}, "lv_area_pred_mm2": [10.0, 8.0, 6.0, 9.0],
             "lv_area_gt_mm2": [11.0, None, 5.0, None], "ed_stored": 0, "es_stored": 2, "ef_pred": 50.0 + i,
             "ef_gt_masks": 52.0 - i, "ed_pred": 0, "es_pred": 2} for i in range(3)]
    return {"schema": "samfx.eval/1", "checkpoint": "x.pt", "store": "s.h5", "split": "test", "prompt": "apg",
            "image_size": 32, "distance_unit": "mm", "classes": ["LV"], "n_images": 2, "n_patients": 2,
            "per_image": {"LV": {m: {"mean": 0.5, "std": 0.1, "n": 2, "n_inf": 0} for m in cls["LV"]}},
            "patients": [{"patient": p, "n_images": 1, "classes": cls} for p in ("p1", "p2")],
            "images": [], "sequences": {"sequences": seqs, "summary": {"n": 3}}}


def test_sequence_section_has_area_curves_and_bland_altman(tmp_path):
    doc = render(RunData(run=tmp_path, eval_path=tmp_path / "eval-test.json", report=_sequence_report()))
    assert "LV area over the cycle" in doc and 'alt="LV area curves"' in doc
    assert 'alt="EF Bland-Altman plot"' in doc and "bias 0.00 points" in doc  # diffs -2, 0, 2
    assert doc.count('<tr><td class="l"') >= 3


def test_report_of_a_toy_run_is_self_contained(toy_run, report_html):
    from PIL import Image

    assert report_html == toy_run / "report-test.html"
    doc = report_html.read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", doc) and "<link" not in doc  # nothing fetched
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', doc)
    # legend + 6 overlays + LV area + one stage's curves (no EF plot: the toy sequence is labeled on 2 frames)
    assert len(srcs) == 9 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and min(im.size) > 0
    assert doc.count('class="tile"') == 6  # worst 5 + best 1 of 6 test images
    patients = doc.split('id="patients"')[1].split("</section>")[0]
    assert re.findall(r'<tr><td class="l">([^<]+)</td>', patients) == ["test-p0", "test-p1", "test-seq0"]
    for section in ("Evaluation per class", "Worst and best images", "Per patient", "LV area over the cycle",
                    "Training curves", "Parameters", "Recipe and versions", "percentile bootstrap over patients"):
        assert section in doc, section
    assert "trainable in all" in doc and "temporal" in doc


def test_sequence_eval_stores_lv_area_curves(toy_run):
    import json

    seq = json.loads((toy_run / "eval-test.json").read_text())["sequences"]["sequences"][0]
    assert len(seq["lv_area_pred_mm2"]) == 6 and seq["ed_stored"] == 0 and seq["es_stored"] == 3
    gt = seq["lv_area_gt_mm2"]
    assert [v is None for v in gt] == [False, True, True, False, True, True] and gt[0] > 0  # labeled: 0 and 3


# -- CLI -------------------------------------------------------------------------------------------
def test_report_errors_are_one_line(toy_run, tmp_path):
    one_line(cli("report", tmp_path / "nope"), f"{tmp_path / 'nope'}: no such run folder", "samfx train")
    one_line(cli("report", tmp_path), f"{tmp_path}: not a samfx run folder")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(toy_run / "recipe.yaml", bare / "recipe.yaml")
    one_line(cli("report", bare), f"{bare}: no evaluation yet", f"`samfx eval {bare} --report`")
    one_line(cli("report", toy_run, "--split", "val"), "no evaluation of split 'val' yet",
             f"`samfx eval {toy_run} --split val --report`")


def test_eval_report_flag_writes_the_page(plugins, toy_run, tmp_path, monkeypatch):
    import samfx.contracts.plugins as pm

    monkeypatch.setattr(pm, "_CACHE", plugins)
    out = tmp_path / "r.html"
    res = cli("eval", toy_run, "--split", "test", "--device", "cpu", "--limit", "3", "--report-out", out)
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == f"html report: {out}"
    assert out.read_text().count('class="tile"') == 3
    res = cli("report", toy_run, "--out", tmp_path / "again.html")
    assert res.exit_code == 0 and res.output.strip() == f"html report: {tmp_path / 'again.html'}", res.output


# -- in a real browser -----------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
NO_BROWSER = "headless browser check needs Debian's `chromium` (apt-get install -y chromium; .ci/run installs it)"


def _chromium(profile: Path, *args: str) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    res = subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.skipif(CHROMIUM is None, reason=NO_BROWSER)
def test_report_renders_in_headless_chromium(report_html, tmp_path):
    from PIL import Image

    source = report_html.read_text()
    n_img, n_tables = source.count("<img "), source.count("<table")
    dom = _chromium(tmp_path / "profile", "--dump-dom", report_html.as_uri())
    root = re.search(r"<html[^>]*>", dom)
    assert root, dom[:500]
    tag = root.group(0)  # set by the page's script once every image has decoded (CHECK_JS)
    assert 'data-rendered="ok"' in tag and f'data-images="{n_img}"' in tag and 'data-images-bad="0"' in tag, tag
    assert f'data-tables="{n_tables}"' in tag and n_tables >= 5
    assert f"<title>samfx report: {report_html.parent.name} (test, prompt toy_class)</title>" in dom
    shot = tmp_path / "shot.png"
    _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400", report_html.as_uri())
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"))
    assert pixels.shape == (2400, 1280) and pixels.std() > 20  # not a blank page


@pytest.mark.skipif(CHROMIUM is None, reason=NO_BROWSER)
def test_browser_check_catches_a_broken_image(tmp_path):
    bad = tmp_path / "bad.html"
    good_png = F.legend_png([1], ["LV"])
    bad.write_text(page("bad", img(good_png, "fine") + img(base64.b64encode(b"not a png").decode(), "broken")))
    dom = _chromium(tmp_path / "profile", "--dump-dom", bad.as_uri())
    tag = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-rendered="broken"' in tag and 'data-images-bad="1"' in tag, tag


@pytest.mark.skipif(CHROMIUM is None, reason=NO_BROWSER)
def test_clicking_a_header_sorts_the_table_in_the_browser(tmp_path):
    rows = [[f'<td class="l">{p}</td>', f'<td data-v="{v}">{v}</td>'] for p, v in (("a", 0.5), ("b", 0.9), ("c", 0.1))]
    rows.append(['<td class="l">d</td>', '<td data-v="">–</td>'])  # a missing value sorts last
    click = ("<script>window.addEventListener('load', function () { var th = document.querySelectorAll('th')[1];"
             " th.click(); var once = [].map.call(document.querySelectorAll('tbody tr'), function (r) {"
             " return r.cells[0].textContent; }).join(''); th.click(); document.documentElement.dataset.order ="
             " once + '/' + [].map.call(document.querySelectorAll('tbody tr'), function (r) {"
             " return r.cells[0].textContent; }).join(''); });</script>")
    path = tmp_path / "sort.html"
    doc = page("sort", table(["patient", "Dice"], rows, cls="sortable"))
    path.write_text(doc.replace("</body>", click + "</body>"))
    tag = re.search(r"<html[^>]*>", _chromium(tmp_path / "profile", "--dump-dom", path.as_uri())).group(0)
    assert 'data-order="cabd/bacd"' in tag, tag  # ascending, then descending; missing last both times
