"""Process-group setup for ``torchrun`` and exact cross-rank training and evaluation.

Under ``torchrun --nproc-per-node N`` the environment carries ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; the trainer then uses DistributedDataParallel with backend ``nccl`` on CUDA
and ``gloo`` on CPU. Metrics are computed on the full gathered split, never averaged per rank.
Every helper here is a no-op (returns its input) in a single process, so the trainer has one
code path. Collectives must be called by every rank in the same order: none of these may sit
behind a condition that differs between ranks.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistEnv", "backend_for", "barrier", "broadcast_module", "broadcast_object", "gather_objects", "gather_rows",
           "init_distributed", "on_main", "pick_device", "rank_seed", "ranks_where", "real_rows", "shutdown",
           "sum_across_ranks"]

log = logging.getLogger("mmcore.train")
T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False  # init_distributed created the process group, so shutdown() destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` = CUDA when available; asking for ``cuda`` without it is a clear error.

    Process ``local_rank`` gets GPU ``local_rank``. A process that sees a single GPU uses it (a
    scheduler that gives each task its own GPU through ``CUDA_VISIBLE_DEVICES``); more processes
    on a node than the GPUs they all see is an error — two nccl ranks on one GPU fail later with a
    far less readable message.
    """
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        from ..errors import MmcoreUserError

        if not torch.cuda.is_available():
            raise MmcoreUserError("train.device is 'cuda' but torch sees no CUDA device; use device: auto or cpu")
        n = torch.cuda.device_count()
        if n == 1:
            return torch.device("cuda", 0)
        if local_rank >= n:
            raise MmcoreUserError(f"LOCAL_RANK {local_rank} but this node has {n} visible CUDA devices; start at "
                                  f"most {n} processes per node (torchrun --nproc-per-node {n}) or use device: cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` for CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def process_rank() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) of this process, from torchrun's environment; (0, 0, 1) otherwise."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")))


def init_distributed(device_pref: str) -> DistEnv:
    """Join the process group torchrun describes, or return a single-process environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local, _ = process_rank()
    device = pick_device(device_pref, local)
    if world <= 1:
        return DistEnv(device=device)
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend)
    log.info("distributed: rank %d/%d on %s (backend %s)", rank, world, device, backend)
    return DistEnv(rank, world, local, device, backend, owns)


def gather_rows(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate equally sized per-rank tensors along dim 0 (rank order)."""
    if not env.distributed:
        return t
    parts = [torch.empty_like(t) for _ in range(env.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, 0)


def broadcast_object(obj, env: DistEnv):
    """Rank 0's ``obj`` on every rank (pickled; tensors included)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=env.device if env.device.type == "cuda" else None)
    return box[0]


def gather_objects(obj, env: DistEnv) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], T], env: DistEnv) -> T:
    """Run ``fn`` on rank 0 only and give its result — or its exception — to every rank.

    Why: a check that only rank 0 can make (the run directory, a checkpoint file that exists only
    on rank 0's disk) must fail on every rank, or the others wait in the next collective until
    the process-group timeout instead of showing the error.
    """
    if not env.distributed:
        return fn()
    result, error = None, None
    if env.is_main:
        try:
            result = fn()
        except Exception as e:  # re-raised below on every rank, rank 0 with its own traceback
            error = e
    box = broadcast_object((result, _picklable(error)), env)
    if error is not None:
        raise error
    if box[1] is not None:
        raise box[1]
    return box[0]


def _picklable(e: Exception | None) -> Exception | None:
    if e is None:
        return None
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # an exception type that does not round-trip: keep its text
        return RuntimeError(f"rank 0: {type(e).__name__}: {e}")


def broadcast_module(module: nn.Module, env: DistEnv) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's, in place.

    Why: DDP keeps parameters equal through the averaged gradients and broadcasts buffers from
    rank 0 at the start of each *training* forward, but a buffer updated in the last forward of
    an epoch (an EMA, refitted prototypes) differs between ranks until the next one. Called
    before evaluation and checkpointing, so every rank evaluates the model rank 0 saves.
    """
    if not env.distributed:
        return
    with torch.no_grad():
        for t in module.state_dict(keep_vars=True).values():
            if isinstance(t, torch.Tensor):  # skips get_extra_state() objects
                t = t.data
                dist.broadcast(t.view(torch.uint8) if t.dtype == torch.bool else t, src=0)  # gloo has no bool


def sum_across_ranks(t: torch.Tensor, env: DistEnv | None = None) -> torch.Tensor:
    """Elementwise sum of ``t`` over all ranks (a new tensor; no gradient); ``t`` itself outside DDP.

    For components that keep statistics and want them exact under DDP (as SyncBatchNorm does):
    all-reduce (Σ x, count) and divide, instead of averaging per-rank means. Every rank must call
    it at the same point — never behind a data-dependent ``if`` — and it works without ``env``
    (it asks ``torch.distributed`` whether a process group is up).
    """
    world = env.world_size if env is not None else (dist.get_world_size() if dist.is_available()
                                                     and dist.is_initialized() else 1)
    if world <= 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def ranks_where(flag: bool, env: DistEnv) -> list[int]:
    """The ranks whose ``flag`` is true, on every rank (``[0]`` or ``[]`` in a single process)."""
    if not env.distributed:
        return [0] if flag else []
    t = torch.zeros(env.world_size, device=env.device)
    t[env.rank] = float(flag)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [r for r, v in enumerate(t.tolist()) if v > 0]


def real_rows(n: int, per_rank: int, rank: int, world_size: int) -> list[tuple[int, int]]:
    """Per training batch of this rank: (real rows on this rank, real rows over all ranks).

    Mirrors :func:`mmcore.data.base.iterate_batches` with ``world_size > 1``: the epoch's order is
    padded to a multiple of ``world_size`` by repeating its first rows, rank r takes positions
    r, r + W, r + 2W, …, and batch k of every rank together covers positions
    [k·b·W, (k+1)·b·W) (b = ``per_rank``) — the same rows as a single process's batch k of b·W.
    Positions ≥ n are padding; they sit at the end of each rank's last batch, at most one per rank.
    """
    per_rank_total = -(-n // world_size)
    mine_total = (n - rank + world_size - 1) // world_size  # positions r + W·j < n
    out = []
    for start in range(0, per_rank_total, per_rank):
        mine = max(0, min(start + per_rank, mine_total) - start)
        everyone = min(n, (start + per_rank) * world_size) - start * world_size
        out.append((mine, everyone))
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def shutdown(env: DistEnv, *, wait_for_all: bool = True) -> None:
    """Destroy the process group if :func:`init_distributed` created it, and free it.

    ``wait_for_all=False`` after an error: skip the final barrier, which ranks that did not fail
    would never reach (they are in another collective); torchrun then stops them when this
    process exits.

    Why the barrier and ``gc.collect()``: gloo's worker threads release a finished collective's
    tensors a moment after the caller sees it complete, and doing so needs the GIL. If the
    process group is still alive when Python finalises — kept by a DDP wrapper caught in a
    reference cycle — a late release aborts the process (SIGABRT, "terminate called without an
    active exception") after an otherwise successful run, and torchrun reports the rank failed.
    Destroying the group and collecting the cycles here joins those threads while Python is alive.
    """
    if env.distributed and env.owns_group and dist.is_initialized():
        import gc

        if wait_for_all:
            dist.barrier()  # no rank tears down its connections while another still sends
        dist.destroy_process_group()
        gc.collect()


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s random streams (dropout…) after the model is built; rank 0 keeps ``seed``."""
    return seed if rank == 0 else (seed * 1_000_003 + 7_919 * rank) % 2**63


