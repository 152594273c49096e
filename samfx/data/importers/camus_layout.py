"""What both CAMUS releases share: label ids, views, split files and the Info_*.cfg fields."""
from __future__ import annotations

import re
from pathlib import Path

from samfx.data.importers.common import read_lines

CLASSES, CLASS_NAMES = [1, 2, 3], ["LV", "MYO", "LA"]
VIEWS = ("2CH", "4CH")
SPLIT_FILES = {"train": "subgroup_training.txt", "val": "subgroup_validation.txt", "test": "subgroup_testing.txt"}
CFG_KEYS = {"ED": "cfg_ed", "ES": "cfg_es", "NbFrame": "nb_frames", "Sex": "sex", "Age": "age",
            "ImageQuality": "image_quality", "EF": "ef", "FrameRate": "frame_rate",
            "LVedv": "lv_edv", "LVesv": "lv_esv", "LVef": "ef"}  # the last three: 2019 release



def read_cfg(path: Path) -> dict[str, object]:
    """Info_*.cfg ("Key: value" lines) -> attrs with numeric values parsed where possible."""
    out: dict[str, object] = {}
    for line in read_lines(path):
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        name = CFG_KEYS.get(key, re.sub(r"\W+", "_", key).lower())
        try:
            out[name] = int(value) if re.fullmatch(r"-?\d+", value) else float(value)
        except ValueError:
            out[name] = value
    return out
