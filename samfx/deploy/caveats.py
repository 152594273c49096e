"""What ``samfx predict`` says alongside its clinical numbers (docs/temporal.md, "What the clinical numbers
mean and when they are withheld"): the model's provenance, the EF method, the plausibility rules that
withhold EF / volumes / ED / ES, input checks (DICOM modality, scan sector size) and unique output names."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import SamfxError
from samfx.data.files import write_text
from samfx.data.sector import sector_mask
from samfx.engine.eval.clinical import analyze_clip, edge_frames, withhold_reasons

EF_METHOD = "single-plane area-length"
SYNTHETIC = "synthetic_echo"
NOT_CLINICAL = "trained only on synthetic data: not for clinical use"


def _source_names(source: Any) -> list[str]:
    if isinstance(source, dict):
        return [str(source.get("name", "?"))]
    if isinstance(source, (list, tuple)):
        return [n for s in source for n in _source_names(s)]
    return [str(source)] if source else []


def provenance(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """The model's provenance from a checkpoint object (its stored recipe and progress): ``trained_on``
    (the ``data.source`` name(s), comma-joined), ``optimizer_steps`` (progress.global_step) and
    ``synthetic_only`` and ``clinical_use`` (:data:`NOT_CLINICAL` when every source is ``synthetic_echo``,
    plugin-qualified or not, else None). Without a
    checkpoint (an exported ONNX model) everything is unknown (None)."""
    if checkpoint is None:
        return {"trained_on": None, "optimizer_steps": None, "synthetic_only": None,
                "clinical_use": "provenance unknown (exported model)"}
    data = (checkpoint.get("recipe") or {}).get("data") or {}
    names = _source_names(data.get("source", {"name": SYNTHETIC}))
    steps = (checkpoint.get("progress") or {}).get("global_step")
    # a stored recipe names the source by its qualified name ('datasets/synthetic_echo')
    synthetic = bool(names) and all(n.rsplit("/", 1)[-1] == SYNTHETIC for n in names)
    return {"trained_on": ", ".join(names) or None, "optimizer_steps": None if steps is None else int(steps),
            "synthetic_only": synthetic, "clinical_use": NOT_CLINICAL if synthetic else None}


def provenance_line(prov: dict[str, Any]) -> str:
    """One console line: what the model was trained on, for how long, and the clinical-use warning."""
    steps = "?" if prov["optimizer_steps"] is None else prov["optimizer_steps"]
    line = f"model: trained on {prov['trained_on'] or 'unknown data'}, {steps} optimizer steps"
    return f"{line}; {prov['clinical_use'].upper()}" if prov["clinical_use"] else line


def clinical_readout(pred: np.ndarray, lv: int, spacing: tuple[float, ...] | None, extra: dict[str, Any],
                     frames: np.ndarray, confidence: dict[str, float | None] | None = None) -> dict[str, Any]:
    """ED/ES (the input's when known, else max/min LV area), EDV/ESV (mm spacing only) and the
    single-plane area-length EF of the predicted LV (T >= 2 frames), or all of them None with
    ``withheld`` (the reasons, '; '-joined) when :func:`samfx.engine.eval.clinical.withhold_reasons`
    finds any. `extra`: the input's ``ed``, ``es``, ``fps``; the scan sector is the pixels non-zero in
    some frame (holes filled). `confidence`: the model's own confidence in its LV
    (:func:`samfx.engine.eval.clinical.confidence_summary`; None: not reported, that rule is skipped)."""
    c = analyze_clip(pred, spacing or (1.0, 1.0), label=lv, ed=extra.get("ed", -1), es=extra.get("es", -1))
    edge = edge_frames(pred, scan_sector(frames), label=lv)
    reasons = withhold_reasons(c.areas, extra.get("fps"), edge, confidence)
    out: dict[str, Any] = {"ed": c.ed, "es": c.es, "ef_method": EF_METHOD,
                           "ef_estimate": round(c.ef, 2) if math.isfinite(c.ef) else None}
    if spacing:
        out.update(edv_ml=round(c.edv, 3), esv_ml=round(c.esv, 3))
    else:
        out["ef_note"] = "pixel spacing unknown: square pixels assumed, volumes not reported"
    if reasons:
        out.update(ed=None, es=None, ef_estimate=None, withheld="; ".join(reasons))
        if spacing:
            out.update(edv_ml=None, esv_ml=None)
    return out


def scan_sector(frames: np.ndarray) -> np.ndarray | None:
    """(H,W) bool: pixels non-zero in some frame, holes filled (a dark LV cavity stays inside); None when
    every pixel is (no sector to tell)."""
    from scipy.ndimage import binary_fill_holes

    seen = np.asarray(frames).max(0) > 0
    if seen.all():
        return None
    return np.asarray(binary_fill_holes(seen), bool)


def write_area_csv(path: Path, area_px: np.ndarray, spacing: tuple[float, ...] | None) -> None:
    """frame, lv_area_px and, with a known spacing, lv_area_mm2 (no duplicate pixel column without one),
    replacing `path` atomically (samfx.data.files.write_text: a failed write leaves the old file)."""
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["frame", "lv_area_px"] + (["lv_area_mm2"] if spacing else []))
    for t, a in enumerate(area_px):
        mm = [f"{float(a) * spacing[0] * spacing[1]:.4f}"] if spacing else []
        w.writerow([t, int(a), *mm])
    write_text(path, fh.getvalue())


MIN_SECTOR = 0.05   # a scan sector under this fraction of the image is flagged


def sector_warnings(frames: np.ndarray, fraction: float | None = None) -> list[str]:
    """Warnings about the scan sector of gray frames (T,H,W) uint8: none found
    (:func:`samfx.data.sector.sector_mask` finds none), or one covering under :data:`MIN_SECTOR` of the
    image. `fraction`: the sector's share when the reader measured it already (a DICOM's)."""
    if fraction is None:
        mask = sector_mask(np.asarray(frames))
        if mask is None:
            return ["no scan sector found (blank image?)"]
        fraction = float(mask.mean())
    if fraction < MIN_SECTOR:
        return [f"scan sector covers {100 * fraction:.1f} % of the image (< {100 * MIN_SECTOR:.0f} %): the input "
                f"may be mostly screen, not ultrasound; check it before trusting the result"]
    return []


def check_modality(modality: str, path: Path, any_modality: bool) -> None:
    """Refuse a DICOM whose Modality (0008,0060) is not US (one line naming the file), unless `any_modality`."""
    if modality != "US" and not any_modality:
        raise SamfxError(f"{path}: DICOM Modality (0008,0060) is '{modality or 'missing'}', not US (ultrasound); "
                         f"the model reads ultrasound only (--any-modality overrides this)")


def unique_names(names: list[str], sources: list[str]) -> list[str]:
    """Output names, one per input, unique and deterministic: a name shared by several inputs (compared
    case-insensitively) is prefixed with its source's parent folder name, and any still shared get
    ``-2``, ``-3``, ... in input order (the first keeps its name)."""
    def clashes(ns: list[str]) -> set[str]:
        low = [n.lower() for n in ns]
        return {n for n in low if low.count(n) > 1}

    shared = clashes(names)
    out = [f"{Path(s).parent.name}-{n}" if n.lower() in shared and Path(s).parent.name else n
           for n, s in zip(names, sources)]
    seen: dict[str, int] = {}
    taken = {n.lower() for n in out}
    for i, n in enumerate(out):
        k = seen.get(n.lower(), 0) + 1
        seen[n.lower()] = k
        if k > 1:
            while f"{n}-{k}".lower() in taken:
                k += 1
            out[i] = f"{n}-{k}"
            taken.add(out[i].lower())
    return out
