import os

import numpy as np
import pytest
import torch
from torch import nn

from mmcore.phases import Phase, Step
from mmcore.protocols import AlignerOutput
from mmcore.registry import reset_registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "mmmo.npz")


@pytest.fixture
def builtins_only(monkeypatch):
    """A registry with the built-ins only, whatever plugins are installed; restored afterwards."""
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "")
    reset_registry()
    yield
    monkeypatch.delenv("MMCORE_LOAD_PLUGINS")
    reset_registry()


@pytest.fixture
def fresh_registry():
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def mmmo_path():
    if not os.path.exists(SHARED_DATA):
        pytest.skip(f"real ICT-MMMO features not found at {SHARED_DATA} (shared/ must sit beside the repo)")
    return SHARED_DATA


def run_cli(argv, capsys, cwd=None):
    """Run the mmcore CLI in-process; return (exit code, stdout, stderr)."""
    from mmcore.cli import main

    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        code = main(list(argv))
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return code, out.out, out.err


def interrupt_after_saves(monkeypatch, n: int = 2):
    """Make training raise KeyboardInterrupt right after its n-th last.pt is written (a Ctrl-C between
    epochs); returns a function that restores the real checkpoint writer."""
    from mmcore.train import trainer as trainer_mod

    real_save, saves = trainer_mod.save_checkpoint, {"n": 0}

    def save_then_interrupt(path, payload):
        real_save(path, payload)
        if path.endswith("last.pt"):
            saves["n"] += 1
            if saves["n"] == n:
                raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "save_checkpoint", save_then_interrupt)
    return lambda: monkeypatch.setattr(trainer_mod, "save_checkpoint", real_save)


def tiny_spec_dict(*, seed: int, splits: tuple[int, int, int], train: dict, missing: dict | None = None) -> dict:
    """A tiny spec on synthetic data: three modalities, linear encoders, concat_pool, an MLP regression head.

    ``splits`` is (n_train, n_valid, n_test); ``missing`` and ``train`` are the spec's sections as given.
    """
    n_train, n_valid, n_test = splits
    spec = {"seed": seed, "modalities": {"text": {}, "audio": {}, "vision": {}},
            "model": {"d_model": 8, "dropout": 0.0}, "encoders": {"default": {"name": "linear"}},
            "fuser": {"name": "concat_pool"}, "head": {"name": "regression_mlp", "params": {"hidden": 8}},
            "data": {"name": "synthetic", "params": {"n_train": n_train, "n_valid": n_valid, "n_test": n_test,
                                                     "dims": {"text": 8, "audio": 6, "vision": 5},
                                                     "lengths": {"text": 6, "audio": 9, "vision": 7}}}}
    if missing is not None:
        spec["missing"] = missing
    spec["train"] = train
    return spec


def npz_split_features(rng, n: int, steps: int, dims: dict[str, int], shift: float, *, text_in_train: bool):
    """For each split in turn, ``(split, {modality: (n, steps, d) float32 standard normal + shift})``.

    Without ``text_in_train`` the train split has no text. Drawn lazily, split by split, so what the
    caller draws from ``rng`` between two splits (their labels) comes between them in the stream.
    """
    for split in ("train", "valid", "test"):
        yield split, {m: rng.standard_normal((n, steps, d)).astype(np.float32) + shift for m, d in dims.items()
                      if text_in_train or not (m == "text" and split == "train")}


class PhasedScaleAligner(nn.Module):
    """Identity aligner with a learnable scale and MM-Align-like phases (test fixture): a warm-up that
    trains the head only, then two optimiser steps per batch on disjoint parameters."""

    def __init__(self, params, ctx):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, seqs, valid):
        return AlignerOutput({m: x * self.scale for m, x in seqs.items()}, dict(valid), {})

    def training_phases(self, epochs):
        return [Phase("warmup", (Step("head_only", params=("head.*",), missing=False),), epochs=1, select=False),
                Phase("main", (Step("aligner", params=("aligner.*",)), Step("rest", params=("*", "!aligner.*"))))]
