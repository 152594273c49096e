"""Generator v2 (samfx/data/synth_v2): shapes, labels on every frame, ED/ES, EF, determinism, the speckle
physics (tissue speckle carried by the motion, blood speckle renewed), options, CLI and stats."""
import json

import numpy as np
import pytest
from scipy.ndimage import binary_erosion
from typer.testing import CliRunner

from samfx.cli.main import app
from samfx.contracts.errors import DataError
from samfx.data.stats import store_stats
from samfx.data.store import open_store, read_frames, read_index
from samfx.data.synth.store import generate
from samfx.data.synth.v2.options import SynthV2Options, v2_options
from samfx.data.synth.v2.patient import cycle, patient_params
from samfx.data.synth.v2.render import render_sequence

SIZE = (96, 112)
FULL, HALF = SynthV2Options(full_cycle=1.0), SynthV2Options(full_cycle=0.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("v2") / "v2.h5", patients=6, seed=2, frames=8, size=(128, 144),
                    version=2)


def test_shapes_dtypes_and_labels_on_every_frame():
    for view, opts in (("2CH", HALF), ("4CH", FULL)):
        s = render_sequence(1, 3, view, 7, SIZE, opts)
        assert s.frames.shape == s.labels.shape == (7, *SIZE)
        assert s.frames.dtype == np.uint8 and s.labels.dtype == np.uint8
        assert set(np.unique(s.labels)) <= {0, 1, 2, 3}
        for t in range(7):
            assert {1, 2, 3} <= set(np.unique(s.labels[t])), (view, t)
        assert s.frames[0].std() > 15 and s.frames[:, 0, 0].max() == 0  # speckle inside, black outside
        assert s.length.shape == (7,) and s.fps > 0 and s.quality in ("Good", "Medium", "Poor")


@pytest.mark.parametrize("opts", [HALF, FULL], ids=["half", "full"])
def test_ed_es_are_the_lv_area_max_and_min(opts):
    for patient in (1, 2, 3):
        for view in ("2CH", "4CH"):
            s = render_sequence(0, patient, view, 12, SIZE, opts)
            area = (s.labels == 1).sum(axis=(1, 2))
            assert s.ed == 0 and int(np.argmax(area)) == s.ed and int(np.argmin(area)) == s.es
            assert s.full_cycle == (opts is FULL)
            assert (s.es == 11) == (opts is HALF)


def test_mitral_valve_closed_at_ed_and_es_open_in_diastole():
    hp = dict(patient_params(0, 1, FULL), heart_rate=70.0)
    phi, valve, es, _ = cycle(16, hp)
    assert valve[0] == 0 and valve[es] == 0 and valve[: es + 1].max() == 0 and valve[es:].max() > 0.8
    assert phi[0] == 0 and phi[es] == pytest.approx(1) and phi.argmax() == es
    phi, valve, es, _ = cycle(16, dict(hp, full_cycle=False))
    assert es == 15 and valve.max() == 0  # half cycle: systole only, valve closed


def test_store_ef_matches_the_sampled_ef(store):
    idx = read_index(store)
    seqs = list(idx.items.values())
    assert len(seqs) == 12 and all(all(s.labeled) for s in seqs)
    err = [s.ef - s.attrs["ef_target"] for s in seqs]
    assert max(abs(e) for e in err) < 5.0, err
    st = store_stats(store)
    assert st["generator_version"] == 2 and st["ef_error"]["n"] == 6
    fr = st["area_fraction"]
    assert all(0.01 < fr[k] < 0.3 for k in ("LV", "MYO", "LA"))


def test_determinism_per_seed(store, tmp_path):
    a = render_sequence(4, 2, "4CH", 5, SIZE)
    b = render_sequence(4, 2, "4CH", 5, SIZE)
    c = render_sequence(5, 2, "4CH", 5, SIZE)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.frames, c.frames)
    fewer = generate(tmp_path / "fewer.h5", patients=2, seed=2, frames=8, size=(128, 144), version=2)
    with open_store(store) as f, open_store(fewer) as g:
        for k in g["sequences"]:  # a patient does not depend on how many are generated
            assert np.array_equal(f["sequences"][k]["frames"][()], g["sequences"][k]["frames"][()])


def _frame_correlation(frames, mask) -> float:
    """Mean over t of the correlation of pixel values between frames t and t+1, on pixels in `mask` at both."""
    cs = []
    for t in range(frames.shape[0] - 1):
        m = mask[t] & mask[t + 1]
        cs.append(np.corrcoef(frames[t][m].astype(float), frames[t + 1][m].astype(float))[0, 1])
    return float(np.mean(cs))


def test_speckle_is_carried_in_tissue_and_renewed_in_blood():
    """The physical claim: frame to frame, speckle stays correlated in the myocardium (scatterers move with
    it) and decorrelates in the blood. Structures inside the cavity (trabeculae, papillary muscles,
    leaflets, clutter) are tissue and correlated too, so they are switched off to see the blood alone."""
    opts = SynthV2Options(papillary=False, trabeculae=0.0, mitral_valve=False, clutter=0.0)
    myo, blood = [], []
    for patient in (1, 2, 3):
        s = render_sequence(0, patient, "2CH", 10, (160, 176), opts)
        myo.append(_frame_correlation(s.frames, s.labels == 2))
        core = np.stack([binary_erosion(lab == 1, iterations=int(4 / s.spacing)) for lab in s.labels])
        blood.append(_frame_correlation(s.frames, core))
    assert min(myo) > 0.7 and max(blood) < 0.6 and np.mean(myo) - np.mean(blood) > 0.25, (myo, blood)
    carried = SynthV2Options(papillary=False, trabeculae=0.0, mitral_valve=False, clutter=0.0, blood_correlation=1.0)
    s = render_sequence(0, 1, "2CH", 10, (160, 176), carried)
    core = np.stack([binary_erosion(lab == 1, iterations=int(4 / s.spacing)) for lab in s.labels])
    assert _frame_correlation(s.frames, core) > blood[0] + 0.1  # the option is what decorrelates the blood


def test_effects_switch_off():
    base = render_sequence(0, 1, "2CH", 3, SIZE)
    quiet = render_sequence(0, 1, "2CH", 3, SIZE, SynthV2Options(clutter=0.0))
    near = slice(0, SIZE[0] // 6)
    assert quiet.frames[:, near].mean() < base.frames[:, near].mean()  # near-field clutter
    assert np.array_equal(base.labels, quiet.labels)  # effects change pixels, never labels
    shadow = render_sequence(0, 1, "2CH", 3, SIZE, SynthV2Options(shadow=1.0))
    assert shadow.frames.mean() < base.frames.mean()  # a rib shadow darkens beams behind it


def test_options_are_checked():
    assert v2_options(None) == SynthV2Options()
    with pytest.raises(DataError, match=r"v2.tgc: must be in \[0, 1\], got 1.5"):
        v2_options({"tgc": 1.5})
    with pytest.raises(DataError, match=r"v2: unknown option\(s\) shadw"):
        v2_options({"shadw": 0.0})
    with pytest.raises(DataError, match="quality_mix"):
        v2_options({"quality_mix": [1.0, 0.0]})
    with pytest.raises(DataError, match="wall_flicker: a generator v1 option"):
        generate("/nonexistent/x.h5", patients=1, version=2, wall_flicker=0.5)
    with pytest.raises(DataError, match="versions 1 and 2, got 3"):
        generate("/nonexistent/x.h5", patients=1, version=3)


def test_cli_synth_v2_and_stats(tmp_path):
    out = tmp_path / "c.h5"
    runner = CliRunner()
    r = runner.invoke(app, ["data", "synth", "--out", str(out), "--patients", "2", "--frames", "6", "--size", "64",
                            "72", "--version", "2", "--v2", "shadow=0", "--v2", "full_cycle=1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["version"] == 2
    with open_store(out) as f:
        assert json.loads(f.attrs["v2_options"])["shadow"] == 0
        _, labels = read_frames(f, "patient0001_2CH")
    assert labels.shape == (6, 64, 72)
    assert all(it.attrs["cycle"] == "full" for it in read_index(out).items.values())
    r = runner.invoke(app, ["data", "stats", str(out)])
    assert r.exit_code == 0, r.output
    assert "generator v2; sequences: full cycle 4" in r.output and "label EF - sampled EF: mean" in r.output
    assert "image quality (patients):" in r.output
    r = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "d.h5"), "--v2", "shadow=0"])
    assert r.exit_code == 2 and "--v2: generator v2 options need --version 2" in r.output
    r = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "d.h5"), "--version", "2", "--v2", "shadow"])
    assert r.exit_code == 2 and "expected KEY=VALUE" in r.output
