"""DDP through torchrun: process-group set-up, rank helpers and the ``--nproc-per-node`` launcher.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the trainer joins the process group:
NCCL on CUDA, gloo on CPU. Only rank 0 writes the run folder; the others compute.
"""
from __future__ import annotations

import gc
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from samfx.contracts.errors import SamfxError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(pref: str, info: DistInfo | None = None, option: str = "train.device=") -> torch.device:
    """The device of ``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``; under DDP
    (`info` enabled) cuda is the local rank's GPU. `option` spells the setting in errors
    (``train.device=``, or ``--device `` for a command-line option)."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cpu":
        return torch.device("cpu")
    if not re.fullmatch(r"cuda(:\d+)?", pref):
        raise SamfxError(f"{option}{pref}: unknown device; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise SamfxError(f"{option}{pref}: no CUDA device is visible to torch {torch.__version__}; "
                         f"use {option}cpu (or auto)")
    if info is not None and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(pref)


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (idempotent); no-op for one process."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return info


def cleanup() -> None:
    """Leave the process group. Call it once the trainer is unreachable: the collection first frees
    DDP wrappers caught in reference cycles, whose reducers would otherwise keep the gloo group alive
    until interpreter shutdown, where its threads can abort the process (SIGABRT, seen once)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if active():
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def broadcast_object(obj: Any) -> Any:
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_lists(items: list[Any]) -> list[Any]:
    """Concatenate every rank's list (on every rank)."""
    if not active():
        return items
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def barrier() -> None:
    if active():
        dist.barrier()


def torchrun_argv(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command that reruns ``samfx`` with `argv` on `nproc` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "samfx.cli.main", *argv]


def launch(nproc: int, argv: list[str]) -> None:
    """Replace this process with torchrun (never returns)."""
    cmd = torchrun_argv(nproc, argv)
    os.execv(cmd[0], cmd)
