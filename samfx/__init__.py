"""samfx: a plugin-registry framework for Segment-Anything variants in ultrasound.

This module stays light (no torch import) so that `samfx --help` and plugin listing are fast.
Plugins import `hookimpl` from here.
"""
from samfx.contracts.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
