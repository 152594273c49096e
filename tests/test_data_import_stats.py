"""The stats line every importer ends with (images, patients, classes, spacing range, EF), on the
existing CAMUS 2023 / US30K / EchoNet importers; the new importers' tests check theirs."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from samfx.cli.main import app
from samfx.data.importers.camus import import_camus
from samfx.data.importers.echonet import import_echonet
from samfx.data.importers.summary import summary_line
from tests.test_data_camus import make_camus
from tests.test_data_echonet import make_echonet
from tests.test_data_us30k import _tree


def test_camus_nifti_stats(tmp_path):
    report = import_camus(make_camus(tmp_path / "c", patients=2), tmp_path / "c.h5")
    s = report.stats
    assert (s["images"], s["sequences"], s["frames"], s["labeled_frames"], s["patients"]) == (8, 4, 20, 20, 2)
    assert s["classes"] == {"1": "LV", "2": "MYO", "3": "LA"}
    assert s["spacing_mm"] == pytest.approx([0.154, 0.31]) and s["spacing_unknown_items"] == 0
    assert s["ef_patients"] == 2 and s["ef_range"] == [51.5, 52.5]  # Info_*.cfg EF
    assert report.summary_lines()[-1] == (
        "stats: 8 images, 4 sequences (20 frames, 20 labeled), 2 patients, classes 1=LV, 2=MYO, 3=LA, "
        "spacing 0.154-0.31 mm/px, EF 2 patients, 51.5-52.5 %")


def test_echonet_stats_keep_filelist_ef(tmp_path):
    report = import_echonet(make_echonet(tmp_path / "e"), tmp_path / "e.h5")
    s = report.stats
    assert (s["images"], s["sequences"], s["labeled_frames"], s["patients"]) == (0, 3, 6, 3)
    assert s["spacing_mm"] is None and s["spacing_unknown_items"] == 3
    assert s["ef_patients"] == 3 and s["ef_range"] == [35.5, 61.0]
    assert "spacing unknown, EF 3 patients, 35.5-61.0 %" in summary_line(s)


def test_us30k_stats_in_cli_json(tmp_path):
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:9] = 255
    root = _tree(tmp_path / "r", [mask, mask])
    r = CliRunner().invoke(app, ["data", "us30k", str(root), "--out", str(tmp_path / "u.h5"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)["stats"]
    assert (s["images"], s["patients"], s["classes"], s["ef_range"]) == (2, 2, {"1": "class1"}, None)
    r = CliRunner().invoke(app, ["data", "us30k", str(root), "--out", str(tmp_path / "v.h5")])
    assert r.output.splitlines()[-1] == ("stats: 2 images, 0 sequences (0 frames, 0 labeled), 2 patients, "
                                         "classes 1=class1, spacing unknown, EF none")
