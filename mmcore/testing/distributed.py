"""Run specs under several local processes (gloo on CPU), the way ``torchrun`` would.

For tests of the core and of plugins: does a recipe train under DistributedDataParallel, and do
its metrics agree across ranks and with a single-process run? ::

    from mmcore.testing.distributed import run_distributed

    per_rank = run_distributed(spec_dict, world_size=2, run_dir=str(tmp_path / "ddp"))
    assert per_rank[0]["test"] == per_rank[1]["test"]

Why ``torch.multiprocessing`` rather than a ``torchrun`` subprocess: it needs no spec file or
console script on ``PATH``, starts one interpreter per rank instead of an agent plus workers, and
a failing rank's traceback comes back as the exception of the call. Each rank sees the
environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) and joins the group with :func:`mmcore.train.distributed.init_distributed`, so
training takes the same code path as under torchrun. Starting the processes costs seconds (each
imports torch), so :func:`run_distributed_jobs` runs several specs in one start.

Components must exist in the child processes: installed through an entry point (plugins), or
registered by ``setup`` — a module-level function (picklable by reference) called first in
every rank, e.g. one that applies ``@mmcore.register`` to a test fixture class.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from typing import Any, Callable, NamedTuple

__all__ = ["DistributedJob", "free_port", "run_distributed", "run_distributed_jobs"]


class DistributedJob(NamedTuple):
    """One ``train_run`` for :func:`run_distributed_jobs`: the spec, its run directory, and resume."""

    spec: dict
    run_dir: str
    resume: bool = False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for ``MASTER_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world_size: int, port: int, jobs: list[DistributedJob], device: str, out_dir: str,
            setup: Callable[[], None] | None) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import faulthandler
    import logging

    import torch

    faulthandler.enable()  # a rank killed by a signal (SIGABRT from C++) still prints where it was
    logging.getLogger("mmcore").setLevel(logging.INFO)  # as `mmcore run` logs: train.log gets the epoch lines
    torch.set_num_threads(1)  # N ranks on a few shared cores: oversubscription makes gloo crawl
    if setup is not None:
        setup()
    from ..spec import spec_from_dict
    from ..train.distributed import init_distributed, shutdown
    from ..train.run import train_run

    env = init_distributed(device)
    finished = False
    try:
        for i, job in enumerate(jobs):
            results = train_run(spec_from_dict(job.spec), job.run_dir, resume=job.resume, progress=False, env=env)
            with open(os.path.join(out_dir, f"job{i}-rank{rank}.json"), "w") as f:
                json.dump(results, f)
        finished = True
    finally:
        shutdown(env, wait_for_all=finished)  # after an error, exit at once: the parent stops the other ranks


def run_distributed_jobs(jobs: list[DistributedJob], world_size: int, *, device: str = "cpu",
                         setup: Callable[[], None] | None = None, timeout: float = 300.0) -> list[list[dict[str, Any]]]:
    """Run ``jobs`` one after the other in the same ``world_size`` processes (one process group).

    Each job's ``train.device`` is set to ``device``. ``cpu`` means backend gloo and one thread
    per process; ``cuda`` means nccl with process r on GPU r (needs ``world_size`` GPUs).

    Returns:
        ``results[job][rank]``: the dict :func:`mmcore.train.run.train_run` returned on that rank
        (JSON round-tripped, so tuples come back as lists).

    Raises:
        torch.multiprocessing.ProcessRaisedException: a rank raised (its traceback is in the message).
        torch.multiprocessing.ProcessExitedException: a rank died from a signal.
        TimeoutError: the ranks did not finish within ``timeout`` seconds (e.g. a collective deadlock).
    """
    import torch.multiprocessing as mp

    jobs = [DistributedJob({**j.spec, "train": {**j.spec.get("train", {}), "device": device}}, j.run_dir, j.resume)
            for j in jobs]
    with tempfile.TemporaryDirectory(prefix="mmcore-ddp-") as out_dir:
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the children before torch starts there
        try:
            ctx = mp.start_processes(_worker, args=(world_size, free_port(), jobs, device, out_dir, setup),
                                     nprocs=world_size, join=False, start_method="spawn")
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=1.0):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run_distributed: {world_size} ranks did not finish within {timeout:.0f} s "
                                       "(a rank stuck in a collective?); raise timeout= if the run is just slow")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
                    p.join(5)
        out = []
        for i in range(len(jobs)):
            per_rank = []
            for r in range(world_size):
                with open(os.path.join(out_dir, f"job{i}-rank{r}.json")) as f:
                    per_rank.append(json.load(f))
            out.append(per_rank)
    return out


def run_distributed(spec_dict: dict, world_size: int, run_dir: str, *, resume: bool = False, device: str = "cpu",
                    setup: Callable[[], None] | None = None, timeout: float = 300.0) -> list[dict[str, Any]]:
    """Train ``spec_dict`` with ``world_size`` processes into ``run_dir``, as ``torchrun`` + ``mmcore run`` would.

    The spec's ``train.batch_size`` is the global batch, split across the processes.

    Args:
        spec_dict: a pipeline spec as a dict (as :func:`mmcore.spec.spec_from_dict` takes).
        world_size: number of processes (ranks).
        run_dir: the run directory rank 0 writes (``--out``); must not hold a run unless ``resume``.
        resume: continue the run in ``run_dir`` from its ``last.pt`` (``mmcore run --resume``).
        device: ``cpu`` (gloo, one thread per process) or ``cuda`` (nccl, one GPU per process).
        setup: module-level function called first in every rank (e.g. registers test components).
        timeout: seconds before the ranks are killed and ``TimeoutError`` is raised.

    Returns:
        The results dict of :func:`mmcore.train.run.train_run` from each rank, in rank order.

    Raises:
        As :func:`run_distributed_jobs`.
    """
    return run_distributed_jobs([DistributedJob(spec_dict, run_dir, resume)], world_size, device=device, setup=setup,
                                timeout=timeout)[0]
