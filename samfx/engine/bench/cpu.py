"""What the CPU offers for inference: model name, the ISA level torch dispatches to, the bf16 / VNNI / AMX
flags (Linux /proc/cpuinfo; unknown elsewhere), and the precision ``--precision auto`` picks from them.
Reported by `samfx doctor` and `samfx bench`'s ``info`` (docs/performance.md)."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

FLAG_GROUPS = {"bf16": ("avx512_bf16", "amx_bf16", "avx_ne_convert"),
               "vnni": ("avx512_vnni", "avx_vnni", "amx_int8"),
               "amx": ("amx_tile", "amx_bf16", "amx_int8")}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str | None, set[str] | None]:
    """(CPU model name, flag set) from a Linux /proc/cpuinfo; (platform's processor name or None, None)
    where the file is missing or unreadable (macOS, Windows): callers treat None flags as unknown."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return platform.processor() or None, None
    name, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name is None:
            name = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = set(value.split())
    return name or platform.processor() or None, flags


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """What `samfx doctor` and `samfx bench` report of the CPU: model, the ISA level torch dispatches
    to (``torch.backends.cpu.get_cpu_capability()``; None without torch), the bf16 / VNNI / AMX flags
    present (None: not known on this OS) and the precision ``auto`` picks on it."""
    name, flags = cpu_flags(cpuinfo)
    try:
        import torch

        capability: str | None = torch.backends.cpu.get_cpu_capability()
    except Exception:  # doctor reports, it does not crash
        capability = None
    groups = {k: (None if flags is None else sorted(flags.intersection(v))) for k, v in FLAG_GROUPS.items()}
    return {"model": name, "machine": platform.machine(), "torch_capability": capability,
            "bf16_flags": groups["bf16"], "vnni_flags": groups["vnni"], "amx_flags": groups["amx"],
            "auto_precision": auto_precision(flags)}


def auto_precision(flags: set[str] | None) -> str:
    """``auto`` on a CPU: bf16 where the CPU has native bf16 dot products (avx512_bf16 / AMX), which the
    measurements in docs/performance.md found fastest inside the gate; else fp32 (bf16 emulated is
    several times slower; int8 changes the weights, so it is chosen only when asked for)."""
    if flags and flags.intersection(FLAG_GROUPS["bf16"][:2]):
        return "bf16"
    return "fp32"
