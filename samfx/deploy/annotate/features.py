"""The per-frame image embeddings: an LRU cache bounded in megabytes, shared by the sessions of one server
(keys carry the session, so no session reads another's), and the background thread that fills it for a
loop while the user starts clicking."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


def nbytes(features: Any) -> int:
    """Bytes held by an ImageFeatures (embedding, finer levels, positional encoding)."""
    tensors = [features.embedding, *features.high_res]
    if features.pos is not None:
        tensors.append(features.pos)
    return int(sum(t.numel() * t.element_size() for t in tensors))


class FeatureCache:
    """Least-recently-used cache of ImageFeatures, at most ``limit_mb`` megabytes in all (thread-safe).
    An entry larger than the whole limit is not kept."""

    def __init__(self, limit_mb: float = 1024.0):
        self.limit = int(limit_mb * 2**20)
        self.used = 0
        self.hits = self.misses = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry[0]

    def peek(self, key: Hashable) -> Any | None:
        """The entry under `key` without counting a use (the LRU order is unchanged)."""
        with self._lock:
            entry = self._items.get(key)
            return None if entry is None else entry[0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, features: Any) -> bool:
        """Keep `features` under `key`, evicting the least recently used; False when it cannot fit."""
        size = nbytes(features)
        with self._lock:
            if key in self._items:
                self.used -= self._items.pop(key)[1]
            if size > self.limit:
                return False
            while self.used + size > self.limit and self._items:
                self.used -= self._items.popitem(last=False)[1][1]
            self._items[key] = (features, size)
            self.used += size
            return True

    def room_for(self, size: int) -> bool:
        """Whether `size` more bytes fit without evicting anything."""
        with self._lock:
            return self.used + size <= self.limit

    def drop(self, prefix: Hashable) -> None:
        """Forget every entry whose key is a tuple starting with `prefix` (a closed session)."""
        with self._lock:
            for key in [k for k in self._items if isinstance(k, tuple) and k and k[0] == prefix]:
                self.used -= self._items.pop(key)[1]


class Precompute:
    """Encodes the frames of a loop in a daemon thread through ``compute(t)`` (which caches them), in
    order, stopping early when ``fits()`` says the cache is full (so it never evicts its own frames) or
    :meth:`stop` is called. ``done`` / ``total`` report progress; ``error`` the first failure's message."""

    def __init__(self, total: int, compute: Callable[[int], None], fits: Callable[[], bool]):
        self.total, self.done = total, 0
        self.error: str | None = None
        self.stopped_full = False
        self._compute, self._fits = compute, fits
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="samfx-annotate-embed", daemon=True)

    def start(self) -> Precompute:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        for t in range(self.total):
            if self._stop.is_set():
                return
            if t > 0 and not self._fits():
                self.stopped_full = True
                return
            try:
                self._compute(t)
            except Exception as exc:  # reported in the page's progress line; clicks still encode on demand
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.done = t + 1

    def progress(self) -> dict[str, Any]:
        return {"done": self.done, "total": self.total, "full": self.stopped_full, "error": self.error}
