"""Synthetic apical 2CH/4CH echocardiography: the embedded default dataset.

- ``common``: label ids, views, the LV profile and the area-length EF both versions use;
- ``v1``: the first generator (frozen: its pinned outputs never change);
- ``v2``: the phased-array generator; ``v2.options`` imports no numpy, so plugins can check options cheaply;
- ``store``: ``generate``, a store of either version.

This package imports nothing itself, so that importing ``v2.options`` stays light.
"""
