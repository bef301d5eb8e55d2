"""Process-wide state a run starts from (set by entry points, never by library constructors): every
random stream seeded, and torch's CPU threads chosen by a measured policy (docs/performance.md, P6).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from ..spec import PipelineSpec


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# below this many parameters one torch thread measured fastest (2 threads lost at every size up to 30M
# parameters on a shared 2-core machine: benchmarks/threads_bench.py, docs/performance.md P6)
SMALL_MODEL_PARAMS = 32_000_000

_budget: list[int] = []  # the process's thread budget, read once (see thread_budget)


def choose_threads(explicit: int | None, cores: int, jobs: int, params: int) -> int:
    """torch threads for a run: ``explicit`` (``train.num_threads``) if set; else 1 for a model of fewer
    than :data:`SMALL_MODEL_PARAMS` parameters, else the run's share of ``cores`` (``cores // jobs``, at least 1).

    Why not the machine's load: the thread count can change float reductions, so a run's numbers
    would depend on what else ran at the time; this choice depends on the model and the cores only.
    """
    if explicit:
        return explicit
    return 1 if params < SMALL_MODEL_PARAMS else max(1, cores // max(1, jobs))


def thread_budget() -> int:
    """The torch threads this process may use: torch's count when the first run started (its default is
    the cores, or ``OMP_NUM_THREADS``; a sweep worker starts with its share, ``cores // jobs``)."""
    if not _budget:
        _budget.append(torch.get_num_threads())
    return _budget[0]


def prepare_process(spec: PipelineSpec) -> None:
    """Set the process-wide state a run of ``spec`` starts from: torch's CPU threads (``train.num_threads``,
    if set) and every random stream seeded with ``spec.seed``.

    Why a function of its own: library constructors touch no global state; the entry points
    (:func:`mmcore.train.run.train_run` through :meth:`Trainer.for_training`, and
    :func:`~mmcore.train.run.load_run`) call this once, before the model is built, and
    :func:`apply_thread_policy` once it is built.
    """
    thread_budget()  # read before a run of this process changes it
    if spec.train.num_threads:
        torch.set_num_threads(spec.train.num_threads)
    seed_everything(spec.seed)


def thread_choice(spec: PipelineSpec, model: nn.Module) -> tuple[int, str]:
    """The torch threads :func:`choose_threads` gives this built model, and why (the run header's words)."""
    if spec.train.num_threads:
        return spec.train.num_threads, "train.num_threads"
    params, cores = sum(p.numel() for p in model.parameters()), thread_budget()
    why = f"< {SMALL_MODEL_PARAMS:,}" if params < SMALL_MODEL_PARAMS else f">= {SMALL_MODEL_PARAMS:,}, {cores} available"
    return choose_threads(None, cores, 1, params), f"thread policy: {params:,} parameters {why}"


def apply_thread_policy(spec: PipelineSpec, model: nn.Module) -> int:
    """Set torch's thread count to :func:`thread_choice`'s for this built model; returns it (entry points only)."""
    threads = thread_choice(spec, model)[0]
    torch.set_num_threads(threads)
    return threads
