"""Generator v1 is frozen: the sha256 of its arrays for a few fixed (seed, patient, view, frames, size,
wall_flicker) cases, recorded from the code before the v2 work (commit 4dd9ee2), so numbers published
on v1 data stay reproducible. A failure here means a change altered v1 pixels or labels: undo it (v2
lives in samfx/data/synth/v2/). The hashes were recorded with numpy 2.4 / scipy 1.17; a future numpy or
scipy that changes float rounding in gaussian_filter/zoom would also move them."""
import hashlib

import numpy as np
import pytest

from samfx.data.store import read_index
from samfx.data.synth.store import generate
from samfx.data.synth.v1 import render_sequence

PINNED = [
    ((3, 1, "2CH", 4, (64, 72), 0.0), "6363ad4874c834571a643015ab062682ee680742e2293c973361298b8f01ba24"),
    ((3, 2, "4CH", 4, (64, 72), 0.0), "7b7341f871a9d9303679792bc7ffe7e34d47af629557784a7ddcba01348d7ef7"),
    ((0, 3, "2CH", 6, (96, 112), 0.5), "b72de1bd2c1e296478c61531806ec7701fbe47ec0892dfaa7a309232d1cc7b96"),
    ((0, 1, "4CH", 12, (256, 288), 0.0), "7bad1b9539ffd1191a8f4b2ee6f6aeafb3ea224a112a5ebd6a3487679eb00675"),
]


@pytest.mark.parametrize(("case", "digest"), PINNED, ids=[f"{c[2]}-s{c[0]}p{c[1]}-f{c[3]}" for c, _ in PINNED])
def test_v1_arrays_are_pinned(case, digest):
    frames, labels, spacing, length = render_sequence(*case)
    h = hashlib.sha256()
    for a in (frames, labels, np.float64(spacing), np.asarray(length, np.float64)):
        h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest() == digest


def test_v1_store_ef_is_pinned(tmp_path):
    path = generate(tmp_path / "v1.h5", patients=3, seed=3, frames=4, size=(64, 72))
    index = read_index(path)
    ef = [round(s.ef, 6) for s in index.items.values()]
    assert ef == pytest.approx([54.663580, 54.663580, 54.273506, 54.273506, 37.738110, 37.738110], abs=1e-6)
