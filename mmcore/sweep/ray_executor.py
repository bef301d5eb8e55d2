"""Sweep cells as Ray tasks (``mmcore sweep --executor ray``; the optional extra ``mmcore-lib[ray]``).

Each cell is one Ray task that declares ``cpus_per_cell`` CPUs (and ``gpus_per_cell`` GPUs, 1 by default
when the cluster has GPUs) and runs :func:`mmcore.sweep.runner.run_cell` with that many torch threads,
so Ray never packs more cells on a node than its cores (or GPUs) allow. Everything else is the local
executor's: the cells are the same run folders, resumed the same way, and the driver writes the same
manifest, tables and plots when they end.

Why the run folders must be on a filesystem every node sees: a cell writes its folder where it runs,
and the driver reads ``results.json`` from it. ``--address`` joins a running cluster; without it a
local Ray instance is started with ``jobs × cpus_per_cell`` CPUs and stopped at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._lazy import require
from .grid import SweepError
from .runner import CellOutcome, CellTask, _write_error

log = logging.getLogger("mmcore.sweep")

INSTALL_HINT = "pip install 'mmcore-lib[ray]' (in a checkout: pip install -c constraints.txt -e '.[ray]')"
#: object store of a local instance: cells exchange only task descriptions and outcomes (kilobytes);
#: Ray's default (30% of RAM in /dev/shm) would reserve memory that training needs
LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2


def _import_ray():
    return require("ray", lambda e: SweepError.at("command line (--executor ray)", f"Ray is not installed ({e})",
                                                  (f"run: {INSTALL_HINT}",)))


def _cell_in_ray(task: CellTask, threads: int, level: int) -> CellOutcome:
    """Body of one Ray task: the local executor's worker set-up, then the cell."""
    import torch

    from .runner import run_cell

    torch.set_num_threads(threads)
    logging.getLogger("mmcore").setLevel(level)  # train.log gets the driver's detail
    return run_cell(task)


def run_tasks_ray(tasks: list[CellTask], on_done: Callable[[CellOutcome], None], *, jobs: int = 1,
                  address: str | None = None, cpus_per_cell: int = 1,
                  gpus_per_cell: float | None = None) -> list[CellOutcome]:
    """Run ``tasks`` as Ray tasks; ``on_done`` is called in this process as each cell ends.

    Args: jobs — CPUs of a local instance are ``jobs × cpus_per_cell`` (ignored with ``address``);
    address — a running cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``); cpus_per_cell — CPUs
    a cell declares and its torch threads; gpus_per_cell — GPUs a cell declares (default: 1 when the
    cluster has GPUs, else 0; fractions share a GPU).
    Raises: SweepError when Ray is missing or the cluster cannot fit one cell.
    """
    if cpus_per_cell < 1:
        raise SweepError.at(f"command line (--cpus-per-cell {cpus_per_cell})", "need at least one CPU per cell")
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        t0 = time.perf_counter()
        if address is None:
            ray.init(num_cpus=jobs * cpus_per_cell, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        log.info("Ray %s in %.1fs: %s", "started" if address is None else f"joined at {address}",
                 time.perf_counter() - t0, _resources(ray))
    try:
        return _run(ray, tasks, on_done, cpus_per_cell, gpus_per_cell)
    finally:
        if started_here:
            ray.shutdown()


def _resources(ray) -> str:
    res = ray.cluster_resources()
    return ", ".join(f"{k} {res[k]:g}" for k in ("CPU", "GPU") if k in res) + f", {len(ray.nodes())} node(s)"


def _run(ray, tasks, on_done, cpus_per_cell, gpus_per_cell) -> list[CellOutcome]:
    res = ray.cluster_resources()
    if gpus_per_cell is None:
        gpus_per_cell = 1.0 if res.get("GPU", 0) >= 1 else 0.0
    for kind, need in (("CPU", cpus_per_cell), ("GPU", gpus_per_cell)):
        if need and res.get(kind, 0) < need:
            raise SweepError.at(f"command line (--{kind.lower()}s-per-cell {need:g})",
                                f"the Ray cluster has {res.get(kind, 0):g} {kind}s, fewer than one cell needs")
    level = logging.getLogger("mmcore").getEffectiveLevel()
    remote = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=0)(_cell_in_ray)
    log.info("running %d cells as Ray tasks (%d CPU%s, %g GPU and %d torch thread%s each)", len(tasks), cpus_per_cell,
             "s" * (cpus_per_cell != 1), gpus_per_cell, cpus_per_cell, "s" * (cpus_per_cell != 1))
    pending = {remote.remote(t, cpus_per_cell, level): t for t in tasks}
    outcomes = []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                t = pending.pop(ref)
                try:
                    o = ray.get(ref)
                except ray.exceptions.RayError as e:  # the task's process died (killed, out of memory, node lost)
                    o = CellOutcome(t.key, t.variant, t.seed, "failed", error=f"Ray task failed: {e}")
                    _write_error(t.run_dir, o.error)
                on_done(o)
                outcomes.append(o)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return outcomes
