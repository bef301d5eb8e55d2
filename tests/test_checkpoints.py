"""One checkpoint payload for best.pt and last.pt; checkpoints of the previous shapes still load;
building a Trainer touches no global state (the entry points seed and set threads)."""

import json
import random

import numpy as np
import pytest
from conftest import interrupt_after_saves
import torch

from mmcore.errors import CheckpointError
from mmcore.train import checkpoint as ck
from mmcore.train import trainer as trainer_mod
from mmcore.train.run import load_run, train_run
from test_trainer import tiny_spec


def _history(run_dir):
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_best_and_last_hold_one_payload_shape(tmp_path):
    train_run(tiny_spec(train={"epochs": 2}), str(tmp_path / "run"), progress=False)
    best, last = (ck.load_checkpoint(str(tmp_path / "run" / n)) for n in ("best.pt", "last.pt"))
    assert set(best) == set(last) == {"format", "mmcore_version", "spec", "model", "optimizer", "scheduler", "state",
                                      "rng_ranks"}
    assert best["format"] == last["format"] == ck.FORMAT
    assert best["state"]["epoch"] == best["state"]["best_epoch"]  # best.pt: the state after the selected epoch


def _to_format_1(run_dir):
    """Rewrite a run's checkpoints in the shapes mmcore wrote before FORMAT 2 (best.pt weights only;
    last.pt with rank 0's random state under "rng", no "format")."""
    last = ck.load_checkpoint(str(run_dir / "last.pt"))
    old_last = {k: v for k, v in last.items() if k not in ("format", "rng_ranks")}
    torch.save({**old_last, "rng": last["rng_ranks"][0]}, run_dir / "last.pt")
    best = ck.load_checkpoint(str(run_dir / "best.pt"))
    torch.save({"mmcore_version": best["mmcore_version"], "model": best["model"], "epoch": best["state"]["best_epoch"],
                "score": best["state"]["best_score"], "spec": best["spec"]}, run_dir / "best.pt")


def test_format_1_checkpoints_still_resume_bit_identically(tmp_path, monkeypatch):
    full = train_run(tiny_spec(), str(tmp_path / "full"), progress=False)
    restore = interrupt_after_saves(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_spec(), str(tmp_path / "cut"), progress=False)
    restore()
    _to_format_1(tmp_path / "cut")
    resumed = train_run(tiny_spec(), str(tmp_path / "cut"), resume=True, progress=False)
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    assert _history(tmp_path / "cut") == _history(tmp_path / "full")


def test_a_format_1_best_pt_evaluates_but_is_refused_for_resume(tmp_path):
    run = tmp_path / "run"
    res = train_run(tiny_spec(train={"epochs": 2}), str(run), progress=False)
    _to_format_1(run)
    assert load_run(str(run)).evaluate("test") == res["test"]  # eval and plots read its weights
    (run / "last.pt").write_bytes((run / "best.pt").read_bytes())
    with pytest.raises(CheckpointError, match="holds weights only"):
        train_run(tiny_spec(train={"epochs": 2}), str(run), resume=True, progress=False)


def test_building_a_trainer_touches_no_global_state(tmp_path):
    """No seeding and no thread count in the constructor: the weights follow the caller's random stream."""
    from mmcore.data.load import load_dataset

    rs = tiny_spec(seed=11, train={"num_threads": torch.get_num_threads() + 1})
    data = load_dataset(rs)
    numpy_before, python_before, threads_before = np.random.get_state()[1].copy(), random.getstate(), torch.get_num_threads()
    weights = []
    for caller_seed in (123, 456):
        torch.manual_seed(caller_seed)
        weights.append(trainer_mod.Trainer(rs, data, str(tmp_path), progress=False).model.state_dict())
    assert not all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())  # not reseeded with spec.seed
    assert np.array_equal(np.random.get_state()[1], numpy_before) and random.getstate() == python_before
    assert torch.get_num_threads() == threads_before


def test_for_training_seeds_then_builds(tmp_path):
    import mmcore
    from mmcore.data.load import load_dataset

    rs = tiny_spec(seed=11)
    data = load_dataset(rs)
    torch.manual_seed(0)
    tr = trainer_mod.Trainer.for_training(rs, data, str(tmp_path), progress=False)
    torch.manual_seed(rs.spec.seed)
    fresh = mmcore.build(rs, data_info=data.info)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in tr.model.state_dict().items())
