"""The contract v2 redesign changed no model's outputs or parameter counts: every built-in family,
on fixed inputs, against the values recorded before it (tests/contract_pins.py)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from tests.contract_pins import CASES, PINS, param_counts, run_case, stats

RECORDED = json.loads(PINS.read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_and_parameter_counts_match_the_recorded_ones(case):
    torch.set_num_threads(1)
    want = RECORDED[case]
    assert param_counts(case) == want["params"]
    got = {k: stats(v) for k, v in run_case(case).items()}
    assert sorted(got) == sorted(want["outputs"])
    for name, w in want["outputs"].items():
        g = got[name]
        assert g["shape"] == w["shape"], name
        # float sums may differ in the last bits between CPUs; a real change moves them far more
        for key in ("sum", "abs_sum"):
            assert math.isclose(g[key], w[key], rel_tol=1e-5, abs_tol=1e-4), (name, key, g[key], w[key])
        assert g["head"] == pytest.approx(w["head"], rel=1e-5, abs=1e-5), name
