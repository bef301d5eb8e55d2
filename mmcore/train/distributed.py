"""Process-group setup for ``torchrun`` and exact cross-rank evaluation.

Under ``torchrun --nproc-per-node N`` the environment carries ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; the trainer then uses DistributedDataParallel with backend ``nccl`` on CUDA
and ``gloo`` on CPU. Metrics are computed on the full gathered split, never averaged per rank.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger("mmcore.train")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` = CUDA when available; asking for ``cuda`` without it is a clear error."""
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from ..errors import MmcoreUserError

            raise MmcoreUserError("train.device is 'cuda' but torch sees no CUDA device; use device: auto or cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device_pref: str) -> DistEnv:
    """Join the process group torchrun describes, or return a single-process environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local)
    if world <= 1:
        return DistEnv(device=device)
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    log.info("distributed: rank %d/%d on %s (backend %s)", rank, world, device, backend)
    return DistEnv(rank, world, local, device, backend)


def gather_rows(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate equally sized per-rank tensors along dim 0 (rank order)."""
    if not env.distributed:
        return t
    parts = [torch.empty_like(t) for _ in range(env.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, 0)


def broadcast_object(obj, env: DistEnv):
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
