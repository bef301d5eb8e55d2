"""``self_mm`` in mmcore's trainer: the ULGM memories travel in checkpoints, so an interrupted run resumes exactly."""

from __future__ import annotations

import json
import os

import pytest

import mmcore.train.trainer as trainer_mod
from mmcore.spec import load_spec
from mmcore.train.run import train_run

RECIPE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "baselines", "self_mm.yaml")
TINY = ["data={name: synthetic, params: {n_train: 40, n_valid: 16, n_test: 16, dims: {text: 8, audio: 5, "
        "vision: 6}, lengths: {text: 6, audio: 9, vision: 7}}}", "train.epochs=5", "train.batch_size=16", "train.patience=null"]


def _spec(tmp_path):
    return load_spec(RECIPE, overrides=TINY + [f"output_dir={tmp_path}"])


def _history(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(x) for x in f.read().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    full = train_run(_spec(tmp_path), str(tmp_path / "full"), progress=False)
    saves = {"n": 0}
    real_save = trainer_mod.save_checkpoint

    def crash_after_third_epoch(path, payload):  # after epoch 3 the generated labels are in use
        real_save(path, payload)
        if path.endswith("last.pt"):
            saves["n"] += 1
            if saves["n"] == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "save_checkpoint", crash_after_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_run(_spec(tmp_path), str(tmp_path / "cut"), progress=False)
    monkeypatch.setattr(trainer_mod, "save_checkpoint", real_save)
    resumed = train_run(_spec(tmp_path), str(tmp_path / "cut"), resume=True, progress=False)
    assert resumed["test"] == full["test"]
    history = _history(tmp_path / "full")
    assert _history(tmp_path / "cut") == history
    assert history[2]["train_self_mm_unimodal"] > 0 and history[1]["train_self_mm_unimodal"] == 0  # ULGM on from epoch 3
