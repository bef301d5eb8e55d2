"""The thread policy (issue 17, P6): train.num_threads by default is 1 for a small model, else the run's share."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from test_trainer import tiny_spec

from mmcore.data.load import load_dataset
from mmcore.sweep.runner import worker_threads
from mmcore.train import process as process_mod
from mmcore.train import trainer as trainer_mod
from mmcore.train.run import train_run
from mmcore.train.process import SMALL_MODEL_PARAMS, choose_threads

BIG = SMALL_MODEL_PARAMS


@pytest.mark.parametrize("explicit, cores, jobs, params, want", [
    (None, 2, 1, 100_000, 1),  # small model: one thread whatever the cores
    (None, 16, 1, BIG - 1, 1),
    (None, 16, 1, BIG, 16),  # large model: every core of the run
    (None, 16, 4, BIG, 4),  # a sweep job's share
    (None, 2, 4, BIG, 1),  # more jobs than cores: still one
    (None, 1, 1, BIG, 1),
    (3, 16, 4, 100, 3),  # an explicit setting always wins
    (2, 1, 1, BIG * 10, 2),
])
def test_choose_threads(explicit, cores, jobs, params, want):
    assert choose_threads(explicit, cores, jobs, params) == want


def test_worker_threads_is_the_share_of_the_cores(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [worker_threads(j) for j in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


@pytest.fixture
def threads_restored(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(process_mod, "_budget", [])
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("explicit, budget, small, want", [
    (None, 4, True, 1), (None, 3, False, 3), (2, 4, True, 2), (2, 4, False, 2)])
def test_for_training_applies_the_policy(tmp_path, monkeypatch, threads_restored, explicit, budget, small, want):
    """The budget is torch's count when the first run starts (a sweep worker's share); the model decides."""
    torch.set_num_threads(budget)
    if not small:
        monkeypatch.setattr(process_mod, "SMALL_MODEL_PARAMS", 10)
    rs = tiny_spec(train={"num_threads": explicit})
    trainer_mod.Trainer.for_training(rs, load_dataset(rs), str(tmp_path), progress=False)
    assert torch.get_num_threads() == want
    assert process_mod.thread_budget() == budget  # a second run of the process starts from the same budget


def test_the_run_header_names_the_threads(tmp_path, caplog, threads_restored):
    with caplog.at_level(logging.INFO, logger="mmcore"):
        train_run(tiny_spec(train={"epochs": 1}), str(tmp_path / "run"), progress=False)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("torch threads"))
    assert line.startswith("torch threads: 1 (thread policy: ") and f"parameters < {SMALL_MODEL_PARAMS:,};" in line

    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["platform"]["torch_threads"] == 1
