"""`samfx doctor`: what is installed and what failed."""
from __future__ import annotations

import platform
import sys
from typing import Any


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
    plugins = load_plugins(strict=False)
    for res in plugins.manager.hook.samfx_doctor():
        if isinstance(res, dict):
            out.update(res)
    out["plugins"] = [{**i.to_json(), "traceback": i.traceback} for i in plugins.infos]
    return out
