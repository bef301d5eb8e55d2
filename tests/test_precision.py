"""bf16 autocast and torch.compile give the metrics of fp32 eager within stated tolerances (CPU).

The runs are tiny (64 training rows, 3 epochs) and use dropout 0, so the only difference between
two runs is the arithmetic: bf16 rounding, or the reordered float32 arithmetic of compiled kernels.
"""

import math

import pytest
import torch

from mmcore.spec import spec_from_dict
from mmcore.train import trainer as trainer_mod
from mmcore.train.run import train_run

# bf16 keeps 8 significant bits (relative rounding 2^-8 ≈ 4e-3 per operation); after a few epochs
# the regression metrics of the tiny run moved by ~5e-4 relative (MAE) and ~1e-2 absolute (Corr,
# a small, noisy number for a barely trained model). 2e-2 relative / 5e-2 absolute keep a margin
# across CPUs (native AVX512-BF16 vs emulated) while a run that broke (loss computed in bf16 with
# the wrong scale, a NaN, no training) is off by far more.
BF16_RTOL = 2e-2
BF16_CORR_ATOL = 5e-2
# compiled kernels fuse and reorder float32 arithmetic: ~1e-7 relative observed
COMPILE_RTOL = 1e-4
COMPILE_CORR_ATOL = 1e-4
# accuracy-type metrics count rows; rounding can flip a prediction that sits on a class boundary
MAX_FLIPPED_ROWS = 2

DATA = {"name": "synthetic", "params": {"n_train": 64, "n_valid": 32, "n_test": 32,
                                        "dims": {"text": 8, "audio": 6, "vision": 5},
                                        "lengths": {"text": 6, "audio": 9, "vision": 7}}}


def spec(**train) -> dict:
    return {"seed": 11, "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 16, "dropout": 0.0},
            "encoders": {"default": {"name": "linear"}}, "fuser": {"name": "concat_pool"},
            "head": {"name": "regression_mlp", "params": {"hidden": 8}}, "data": DATA,
            "missing": {"train": [{"type": "temporal", "rate": 0.2}], "eval": []},
            "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "select_metric": "mae", "device": "cpu", **train}}


def compare_runs(tmp_path, train_a: dict, train_b: dict, *, rtol: float, corr_atol: float) -> tuple[dict, dict]:
    """Train the tiny spec twice (``train:`` changes a vs b) and assert their test metrics agree."""
    a = train_run(spec_from_dict(spec(**train_a)), str(tmp_path / "a"), progress=False)
    b = train_run(spec_from_dict(spec(**train_b)), str(tmp_path / "b"), progress=False)
    n_test = DATA["params"]["n_test"]
    for k, ref in b["test"].items():
        got = a["test"][k]
        assert math.isfinite(got), k
        if k in ("loss", "mae"):
            assert math.isclose(got, ref, rel_tol=rtol), f"{k}: {got} vs {ref}"
        elif k == "corr":
            assert abs(got - ref) <= corr_atol, f"{k}: {got} vs {ref}"
        else:  # accuracies and F1 over the test rows
            assert abs(got - ref) <= MAX_FLIPPED_ROWS / n_test + 1e-12, f"{k}: {got} vs {ref}"
    return a, b


def test_bf16_autocast_matches_fp32(tmp_path):
    compare_runs(tmp_path, {"precision": "bf16"}, {}, rtol=BF16_RTOL, corr_atol=BF16_CORR_ATOL)


def test_bf16_runs_the_forward_in_bf16_and_the_loss_in_fp32(tmp_path, monkeypatch):
    seen = set()
    real = trainer_mod.Pipeline.total_loss

    def total_loss(self, out, labels, step=None):
        loss, terms = real(self, out, labels, step)
        seen.add((out.state.rep.dtype, out.pred.dtype, loss.dtype, torch.is_autocast_enabled("cpu")))
        return loss, terms

    monkeypatch.setattr(trainer_mod.Pipeline, "total_loss", total_loss)
    train_run(spec_from_dict(spec(precision="bf16", epochs=1)), str(tmp_path / "run"), progress=False)
    assert seen == {(torch.bfloat16, torch.float32, torch.float32, False)}


@pytest.mark.slow  # torch.compile on CPU generates and compiles C++: ~20-60 s cold on 2 cores
def test_compile_matches_eager(tmp_path):
    a, b = compare_runs(tmp_path, {"compile": True}, {}, rtol=COMPILE_RTOL, corr_atol=COMPILE_CORR_ATOL)
    assert a["best_epoch"] == b["best_epoch"]
