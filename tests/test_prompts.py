"""Simulated prompts: the deterministic eval click (deepest pixel), eager and as a compiled graph runs it."""
from __future__ import annotations

import pytest
import torch

from samfx_plugins.prompts.simulated import deepest_pixel


def _masks() -> torch.Tensor:
    m = torch.zeros(3, 20, 30, dtype=torch.bool)
    m[0, 4:13, 5:22] = True        # 9 x 17 box: deepest row 8, columns 9..17 tie -> first, x = 9
    m[1, 10:12, 0:30] = True       # a 2-row band: depth 1 everywhere, first in raster order
    return m                       # m[2] empty -> image centre


@pytest.mark.parametrize("compiling", [False, True])
def test_deepest_pixel(monkeypatch, compiling):
    """`compiling` forces the fixed-count erosion loop a compiled graph runs; the result must not change."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    xy = deepest_pixel(_masks())
    assert xy.tolist() == [[9.0, 8.0], [0.0, 10.0], [15.0, 10.0]]
