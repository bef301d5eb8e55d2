"""Run sweep cells one at a time or in parallel worker processes, resuming what is there.

A cell's state is read from its directory (see :func:`cell_state`): finished cells are skipped,
finished cells missing some requested missing rates are evaluated without retraining, cells with
a ``last.pt`` resume, the rest train from scratch. A failing cell is recorded (its error, and
``sweep_error.txt`` in its directory) and the others go on.

Why spec *data* crosses the process boundary, not a :class:`ResolvedSpec`: a resolved spec holds
registry entries and classes; the worker re-validates the plain data against its own registry.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import MmcoreUserError

log = logging.getLogger("mmcore.sweep")

ERROR_FILE = "sweep_error.txt"


@dataclass(frozen=True)
class CellTask:
    """What a worker needs to run one cell (picklable)."""

    key: str  # "<variant-slug>/seed<k>"
    variant: str
    seed: int
    run_dir: str
    spec_data: dict
    spec_name: str
    rates: tuple[float, ...] = ()
    progress: bool = False


@dataclass
class CellOutcome:
    """How one cell ended in this invocation."""

    key: str
    variant: str
    seed: int
    status: str  # skipped | trained | resumed | evaluated | failed
    seconds: float = 0.0
    test: dict = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict:
        return {"status": self.status, "seconds": round(self.seconds, 3), "error": self.error}


def _rates_done(run_dir: str, rates: tuple[float, ...]) -> bool:
    path = os.path.join(run_dir, "missing_rates.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        have = [r.get("rate") for r in json.load(f).get("rows", [])]
    return all(any(h is not None and abs(h - r) < 1e-9 for h in have) for r in rates)


def cell_state(run_dir: str, rates: tuple[float, ...] = ()) -> str:
    """``done`` | ``needs_rates`` (trained, some rates not evaluated) | ``resume`` (last.pt) | ``new``."""
    if os.path.exists(os.path.join(run_dir, "results.json")):
        return "done" if not rates or _rates_done(run_dir, rates) else "needs_rates"
    return "resume" if os.path.exists(os.path.join(run_dir, "last.pt")) else "new"


def read_test(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "results.json")) as f:
        return json.load(f).get("test", {})


def run_cell(task: CellTask, rs=None) -> CellOutcome:
    """Bring one cell to ``done``; never raises for the cell's own failure (it is the outcome).

    ``rs``: the already validated spec when running in-process (saves re-validating).
    """
    from ..spec import spec_from_dict
    from ..train.run import evaluate_rates, load_run, train_run, write_rate_table

    start = time.perf_counter()
    state = cell_state(task.run_dir, task.rates)
    status = {"done": "skipped", "needs_rates": "evaluated", "resume": "resumed", "new": "trained"}[state]
    try:
        if state == "needs_rates":
            trainer = load_run(task.run_dir)
            write_rate_table(task.run_dir, evaluate_rates(trainer, list(task.rates)), "test")
        elif state in ("resume", "new"):
            rs = rs or spec_from_dict(task.spec_data, name=task.spec_name)
            train_run(rs, task.run_dir, resume=state == "resume", progress=task.progress,
                      missing_rates=list(task.rates) or None)
        test = read_test(task.run_dir)
    except Exception as e:  # the cell boundary: record the failure where the user sees it, go on with the others
        error = str(e) if isinstance(e, MmcoreUserError) else "".join(traceback.format_exception(e)).rstrip()
        _write_error(task.run_dir, error)
        return CellOutcome(task.key, task.variant, task.seed, "failed", time.perf_counter() - start, error=error)
    err_path = os.path.join(task.run_dir, ERROR_FILE)
    if os.path.exists(err_path):
        os.unlink(err_path)
    return CellOutcome(task.key, task.variant, task.seed, status, time.perf_counter() - start, test)


def _write_error(run_dir: str, error: str) -> None:
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, ERROR_FILE), "w") as f:
        f.write(error + "\n")


def worker_threads(jobs: int) -> int:
    """torch threads per worker: the cores this process may use, shared by ``jobs`` workers."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def _init_worker(threads: int, level: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # train.log gets the parent's detail; no stream handler, so workers do not interleave on stderr
    logging.getLogger("mmcore").setLevel(level)


def run_tasks(tasks: list[CellTask], jobs: int, on_done: Callable[[CellOutcome], None],
              resolved: dict | None = None) -> list[CellOutcome]:
    """Run ``tasks`` (in-process when ``jobs == 1``, else in ``jobs`` spawned processes).

    ``on_done`` is called in this process as each cell ends, in completion order.
    ``resolved``: task key -> ResolvedSpec, used in-process only.
    """
    outcomes = []
    if jobs <= 1 or len(tasks) <= 1:
        for t in tasks:
            o = run_cell(t, (resolved or {}).get(t.key))
            on_done(o)
            outcomes.append(o)
        return outcomes
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    threads = worker_threads(jobs)
    level = logging.getLogger("mmcore").getEffectiveLevel()
    log.info("running %d cells in %d processes (%d torch threads each)", len(tasks), min(jobs, len(tasks)), threads)
    ex = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads, level))
    try:
        futures = {ex.submit(run_cell, t): t for t in tasks}
        for fut in as_completed(futures):
            t = futures[fut]
            try:
                o = fut.result()
            except BrokenProcessPool as e:  # a worker died (killed, out of memory): its cell and the queued ones fail
                o = CellOutcome(t.key, t.variant, t.seed, "failed", error=f"worker process died: {e}")
                _write_error(t.run_dir, o.error)
            on_done(o)
            outcomes.append(o)
    except KeyboardInterrupt:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    return outcomes
