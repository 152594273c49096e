"""Mask value -> class id mapping for the bring-your-own-data importers (`--labels`, `--class-names`).

``--labels 255=1`` or ``--labels 0,128,255=0,1,2`` (repeatable) maps raw mask values to class ids;
values not in the mapping are *unexpected* and reported per file. Mask value 0 is background (class 0)
unless ``--labels`` maps it to another class, so ``--labels 255=1`` imports 0/255 masks. Without
``--labels`` the mapping is the identity on 0..K (K = number of classes), plus 255 -> 1 for a binary
store (0/255 masks).
The declared classes are 1..K: K from ``--class-names`` when given, else the largest class id of
``--labels``, else 1 (binary).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samfx.contracts.errors import DataError


def parse_labels(specs: list[str]) -> dict[int, int]:
    """``["0,128,255=0,1,2", "64=3"]`` -> {0: 0, 128: 1, 255: 2, 64: 3}; DataError on a malformed spec."""
    mapping: dict[int, int] = {}
    for spec in specs:
        left, sep, right = spec.partition("=")
        try:
            src = [int(v) for v in left.split(",")] if sep else []
            dst = [int(v) for v in right.split(",")] if sep else []
        except ValueError:
            src = dst = []
        if not src or len(src) != len(dst) or not all(0 <= v <= 255 for v in src + dst):
            raise DataError(f"--labels {spec!r}: expected MASK_VALUES=CLASS_IDS with as many ids as values, "
                            f"integers in 0..255, e.g. --labels 255=1 or --labels 0,128,255=0,1,2")
        for s, d in zip(src, dst):
            if mapping.get(s, d) != d:
                raise DataError(f"--labels: mask value {s} is mapped to both {mapping[s]} and {d}")
            mapping[s] = d
    return mapping


@dataclass(frozen=True)
class LabelMap:
    """The declared classes and the table that turns raw mask values into them."""

    classes: list[int]
    class_names: list[str]
    table: np.ndarray  # (256,) int16: class id per raw value, -1 = unexpected

    def apply(self, mask: np.ndarray, where: str) -> np.ndarray:
        """Class ids (uint8) of a raw uint8 mask; DataError naming `where` and the unexpected values."""
        ids = self.table[mask]
        if (ids < 0).any():
            found = np.unique(mask[ids < 0])
            expected = np.flatnonzero(self.table >= 0).tolist()
            raise DataError(f"{where}: unexpected mask values {found[:8].tolist()}"
                            f"{' ...' if found.size > 8 else ''} (expected {_short(expected)}); map them "
                            f"with --labels, e.g. --labels {int(found[0])}=1, or declare more --class-names")
        return ids.astype(np.uint8)


def _short(values: list[int]) -> str:
    return str(values) if len(values) <= 8 else f"[{values[0]}, ..., {values[-1]}] ({len(values)} values)"


def build_label_map(specs: list[str] | None, class_names: list[str] | None) -> LabelMap:
    """The LabelMap of ``--labels`` specs and ``--class-names`` (module docstring)."""
    mapping = parse_labels(specs or [])
    top = len(class_names) if class_names else max([*mapping.values(), 1])
    if class_names and mapping and max(mapping.values()) > top:
        raise DataError(f"--labels maps to class {max(mapping.values())} but --class-names names only {top} "
                        f"classes ({', '.join(class_names)}); give one name per class id 1..N")
    names = list(class_names) if class_names else (["foreground"] if top == 1 else
                                                   [f"class{k}" for k in range(1, top + 1)])
    table = np.full(256, -1, np.int16)
    if mapping:
        table[0] = 0  # background, unless the mapping says otherwise just below
        for s, d in mapping.items():
            table[s] = d
    else:
        table[: top + 1] = np.arange(top + 1)
        if top == 1:
            table[255] = 1
    return LabelMap(list(range(1, top + 1)), names, table)
