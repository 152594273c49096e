"""Measuring instruments of `samfx bench` (samfx.engine.bench.run): peak memory of a configuration, per-step
times with one device synchronisation at each end, and a torch.profiler table."""
from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class Memory:
    """Peak memory of one configuration: on CUDA max_memory_allocated (and reserved); on CPU the process
    RSS sampled every 2 ms, an upper bound (samfx.engine.bench.run module doc)."""

    def __init__(self, dev: torch.device):
        self.dev, self.peak, self._stop = dev, 0, threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):  # not Linux: process-lifetime peak
            import resource

            scale = 1 if platform.system() == "Darwin" else 1024
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def current(self) -> float:
        if self.dev.type == "cuda":
            return torch.cuda.memory_allocated(self.dev) / 2**30
        return self.rss() / 2**30

    def __enter__(self) -> Memory:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
        else:
            self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())

    def peaks(self) -> tuple[float, float]:
        """(peak, reserved peak) in GiB."""
        if self.dev.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.dev) / 2**30,
                    torch.cuda.max_memory_reserved(self.dev) / 2**30)
        return self.peak / 2**30, 0.0


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(step: Callable[[], None], dev: torch.device, steps: int) -> list[float]:
    """Milliseconds of each step: CUDA events (no host sync between steps) or the CPU clock."""
    sync(dev)
    if dev.type == "cuda":
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        marks[0].record()
        for i in range(steps):
            step()
            marks[i + 1].record()
        torch.cuda.synchronize(dev)
        return [marks[i].elapsed_time(marks[i + 1]) for i in range(steps)]
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def profile_steps(step: Callable[[], None], dev: torch.device, n: int, path: Path) -> Path:
    """torch.profiler over `n` steps; writes the op table (top 30 by self device/CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(n):
            step()
        sync(dev)
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=70)
    path.write_text(f"# {path.stem}: {n} steps, sorted by {key}\n{table}\n")
    return path
