"""The sam2 package, imported only by the modules that build components (never at registration)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from samfx.contracts.errors import ComponentError
from samfx_plugins.sam2.config import INSTALL


def require_sam2() -> str:
    """sam2's version, or a one-line error naming the install command when it is missing."""
    try:
        import sam2  # noqa: F401
    except ImportError:
        raise ComponentError(f"plugin 'sam2' needs the sam2 package, which is not installed: {INSTALL}") from None
    try:
        return version("sam2")
    except PackageNotFoundError:
        return "unknown"
