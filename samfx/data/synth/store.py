"""Write a synthetic echocardiography store with generator v1 (frozen) or v2."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from samfx.contracts.errors import DataError
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter, split_patients
from samfx.data.synth import v1
from samfx.data.synth.common import CLASS_NAMES, CLASSES, VIEWS
from samfx.data.synth.v2 import render as v2_render
from samfx.data.synth.v2.options import v2_options


def generate(out: str | Path, patients: int = 50, seed: int = 0, frames: int = 12,  # noqa: PLR0913  (mirrors samfx synth's options)
             size: tuple[int, int] = (256, 288), views: tuple[str, ...] = VIEWS,
             show_progress: bool = False, wall_flicker: float = 0.0, force: bool = False,
             version: int = 1, v2: Any = None) -> Path:
    """Write a synthetic store with `patients` × `views` sequences of `frames` frames (H,W)=`size`
    (``wall_flicker``: see :func:`samfx.data.synth.v1.render_sequence`; an existing `out` is replaced only with `force`
    and only when it is a samfx store). ``version`` 1 is the generator above (frozen); 2 is
    :mod:`samfx.data.synth.v2` with options ``v2`` (a mapping or SynthV2Options; None: defaults)."""
    if patients < 1 or frames < 2:
        raise DataError(f"synthetic data needs patients >= 1 and frames >= 2 (ED and ES), got {patients} and {frames}")
    v1.check_wall_flicker(wall_flicker)
    if version not in (1, 2):
        raise DataError(f"version: the synthetic echo generator has versions 1 and 2, got {version}")
    if version == 2 and wall_flicker:
        raise DataError("wall_flicker: a generator v1 option; v2 has its own dropouts (v2.specular_dropout)")
    H, W = (int(s) for s in size)
    if min(H, W) < 32:
        raise DataError(f"synthetic frames must be at least 32×32 pixels, got {H}×{W}")
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise DataError(f"unknown view(s) {bad}; synthetic views are {', '.join(VIEWS)}")
    names = [f"patient{p:04d}" for p in range(1, patients + 1)]
    desc = f"synthetic echo: {patients} patients × {len(views)} views × {frames} frames ({H}×{W}), seed {seed}"
    desc += f", wall flicker {wall_flicker}" if wall_flicker else ""
    desc += ", generator v2" if version == 2 else ""
    with StoreWriter(out, CLASSES, CLASS_NAMES, source="synthetic_echo", description=desc, force=force) as w, \
            progress_bar(patients, "synthesising", show_progress) as advance:
        w.file.attrs["generator_version"] = version if version == 2 else v1.GENERATOR_VERSION
        w.file.attrs["seed"] = seed
        w.file.attrs["wall_flicker"] = wall_flicker
        if version == 2:
            opts = v2_options(v2)
            w.file.attrs["v2_options"] = json.dumps(opts.to_dict(), sort_keys=True)
        for p, name in enumerate(names, start=1):
            if version == 2:
                v2_render.write_patient(w, seed, p, name, views, frames, (H, W), opts)
            else:
                v1.write_patient(w, seed, p, name, views, frames, (H, W), wall_flicker)
            advance()
        for split, members in split_patients(names, seed).items():
            w.set_split(split, patients=members)
    return Path(out)
