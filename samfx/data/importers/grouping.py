"""Patients and splits for the bring-your-own-data importers (`--patient-regex`, `--split`, `--split-list`).

A patient is found in a file name with a regex (its first group, else the whole match), so all
files of one patient land in one split. Splits are either seeded ratios over patients
(``--split 0.7,0.1,0.2`` = train, val, test) or lists of names (``--split-list test=test.txt``):
one name per line, each an item name (file stem) or a patient.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from samfx.contracts.errors import DataError

SPLITS = ("train", "val", "test")


class PatientRule:
    """Maps a file stem to its patient; the stem itself without a regex."""

    def __init__(self, regex: str | None):
        try:
            self.pattern = re.compile(regex) if regex else None
        except re.error as exc:
            raise DataError(f"--patient-regex {regex!r}: not a valid regular expression ({exc})") from None

    def patient(self, stem: str, where: str) -> str:
        """The patient of file stem `stem`; DataError naming `where` when the regex does not match."""
        if self.pattern is None:
            return stem
        m = self.pattern.search(stem)
        if m is None:
            raise DataError(f"{where}: file name does not match --patient-regex {self.pattern.pattern!r}; "
                            f"fix the regex or rename the file")
        return m.group(1) if m.groups() and m.group(1) is not None else m.group(0)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.7,0.1,0.2"`` -> (train, val, test) fractions summing to 1."""
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
        raise DataError(f"--split {text!r}: expected three fractions train,val,test summing to 1, "
                        f"e.g. --split 0.7,0.1,0.2")
    return parts[0], parts[1], parts[2]


def ratio_splits(patients: list[str], ratios: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Seeded split of `patients` by the (train, val, test) fractions, rounded; train takes the rest.
    From 3 patients on, val and test get at least one each unless their fraction is 0."""
    order = [sorted(patients)[i] for i in np.random.default_rng([seed, 4242]).permutation(len(patients))]
    n = len(order)
    n_test = max(round(ratios[2] * n), int(n >= 3 and ratios[2] > 0))
    n_val = min(max(round(ratios[1] * n), int(n >= 3 and ratios[1] > 0)), n - n_test)
    return {"train": sorted(order[n_test + n_val:]), "val": sorted(order[n_test:n_test + n_val]),
            "test": sorted(order[:n_test])}


def read_split_lists(specs: list[str]) -> dict[str, list[str]]:
    """``["train=a.txt", "test=b.txt"]`` -> split name -> names listed in the file (one a line)."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise DataError(f"--split-list {spec!r}: expected NAME=FILE, e.g. --split-list test=test.txt")
        path = Path(file).expanduser()
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"--split-list {spec}: cannot read {path} ({type(exc).__name__}); give a text file "
                            f"with one name a line") from None
        out.setdefault(name, []).extend(ln.strip() for ln in lines if ln.strip())
    return out


def assign_lists(lists: dict[str, list[str]], stems: dict[str, str], patients: dict[str, str]
                 ) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """Resolve listed names against items: split -> {"ids": [...], "patients": [...]} and the names
    that match no item stem (`stems`: stem -> id) or patient (`patients`: id -> patient)."""
    known_patients = set(patients.values())
    resolved: dict[str, dict[str, list[str]]] = {}
    unknown: list[str] = []
    for split, names in lists.items():
        entry = resolved.setdefault(split, {"ids": [], "patients": []})
        for name in names:
            if name in stems:
                entry["ids"].append(stems[name])
            elif name in known_patients:
                entry["patients"].append(name)
            else:
                unknown.append(f"{split}: {name}")
    return resolved, unknown
