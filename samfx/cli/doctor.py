"""`samfx doctor`: what is installed and what failed."""
from __future__ import annotations

import platform
import sys
from typing import Any


def _cpu() -> dict[str, Any]:
    """The CPU's model, torch's ISA level, its bf16 / VNNI / AMX flags and ``--precision auto``'s pick
    (samfx.engine.bench.cpu.cpu_info; "unknown" where the OS does not say)."""
    from samfx.engine.bench.cpu import cpu_info

    names = {"model": "cpu", "machine": "cpu_arch", "torch_capability": "cpu_isa_torch", "bf16_flags": "cpu_bf16",
             "vnni_flags": "cpu_vnni", "amx_flags": "cpu_amx", "auto_precision": "auto_precision"}
    return {names[k]: "unknown" if v is None else (" ".join(v) or "none") if isinstance(v, list) else v
            for k, v in cpu_info().items()}


def collect() -> dict[str, Any]:
    import samfx
    from samfx.contracts.plugins import load_plugins

    out: dict[str, Any] = {"samfx": samfx.__version__, "python": sys.version.split()[0],
                           "platform": platform.platform()}
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda"] = torch.cuda.is_available()
        out["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["threads"] = torch.get_num_threads()
    except Exception as exc:  # doctor must report, not crash
        out["torch"] = f"not importable: {exc}"
    out.update(_cpu())
    plugins = load_plugins(strict=False)
    for res in plugins.manager.hook.samfx_doctor():
        if isinstance(res, dict):
            out.update(res)
    out["plugins"] = [{**i.to_json(), "traceback": i.traceback} for i in plugins.infos]
    return out
