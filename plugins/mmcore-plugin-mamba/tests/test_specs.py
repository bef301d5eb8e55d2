"""Specs with the plugin's components validate and train: synthetic, the real mmmo features, DDP."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from mmcore.errors import SpecError
from mmcore.registry import get_registry
from mmcore.spec import load_spec, spec_from_dict
from mmcore.testing.distributed import run_distributed
from mmcore.train.run import train_run

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]
MMMO = REPO.parent / "shared" / "data" / "mmmo.npz"  # ../shared/data/mmmo.npz from the repository root

TINY_DATA = {"name": "synthetic", "params": {"n_train": 32, "n_valid": 16, "n_test": 16,
                                            "dims": {"text": 8, "audio": 6, "vision": 5},
                                            "lengths": {"text": 6, "audio": 9, "vision": 7}}}
FUSER = {"name": "interleaved_mamba", "params": {"depth": 1, "d_state": 4}}
MGMR_FUSER = {"name": "interleaved_mamba", "params": {"depth": 1, "d_state": 12, "expand": 4, "pool": "max"}}


def tiny_spec(fuser=FUSER, aligner=None, epochs=2, **changes) -> dict:
    spec = {"seed": 1, "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 8, "dropout": 0.1},
            "encoders": {"default": {"name": "linear"}}, "aligner": aligner or {"name": "identity"}, "fuser": fuser,
            "head": {"name": "regression_mlp", "params": {"hidden": 8}}, "data": TINY_DATA,
            "missing": {"train": [{"type": "temporal", "rate": 0.2}], "eval": []},
            "train": {"epochs": epochs, "batch_size": 16, "lr": 3e-3, "select_metric": "mae", "device": "cpu"}}
    spec.update(changes)
    return spec


def _finite(results: dict) -> bool:
    return all(math.isfinite(results["test"][k]) for k in ("mae", "corr")) and results["best_epoch"] is not None


def test_interleaved_mamba_spec_trains_two_epochs(tmp_path):
    res = train_run(spec_from_dict(tiny_spec()), str(tmp_path / "run"), progress=False)
    assert _finite(res)


def test_mgmr_two_stage_spec_trains_two_epochs(tmp_path):
    spec = tiny_spec(MGMR_FUSER, aligner={"name": "bimamba_text_centric", "params": {"d_state": 12, "expand": 4}},
                     encoders={"default": {"name": "mamba", "params": {"d_state": 4}}})
    res = train_run(spec_from_dict(spec), str(tmp_path / "run"), progress=False)
    assert _finite(res)


@pytest.mark.skipif(not MMMO.exists(), reason=f"{MMMO} is absent (shared real data not checked out here)")
def test_mmmo_audio_vision_spec_trains_to_finite_metrics(tmp_path):
    spec = {"seed": 0, "modalities": {"audio": {}, "vision": {}}, "model": {"d_model": 16, "dropout": 0.1},
            "encoders": {"default": {"name": "conv1d"}}, "fuser": FUSER, "head": {"name": "regression_mlp"},
            "data": {"name": "npz", "params": {"path": str(MMMO)}},
            "train": {"epochs": 2, "batch_size": 32, "lr": 1e-3, "select_metric": "mae", "device": "cpu"}}
    res = train_run(spec_from_dict(spec), str(tmp_path / "run"), progress=False)
    assert _finite(res) and math.isfinite(res["baselines"]["train_mean"]["mae"])


def test_one_epoch_under_two_process_ddp_agrees_across_ranks(tmp_path):
    per_rank = run_distributed(tiny_spec(epochs=1), 2, str(tmp_path / "ddp"))
    assert _finite(per_rank[0]) and per_rank[0]["test"] == per_rank[1]["test"]


def test_spec_errors_point_at_the_offending_param():
    spec = tiny_spec(aligner={"name": "bimamba_text_centric"}, modalities={"text": {}})
    with pytest.raises(SpecError, match=r"aligner\.params\.anchor: pairs the anchor 'text' with other modalities"):
        spec_from_dict(spec)
    with pytest.raises(SpecError, match=r"fuser\.params\.order\[0\]: 'txt' is not a declared modality"):
        spec_from_dict(tiny_spec({"name": "interleaved_mamba", "params": {"order": ["txt"]}}))


@pytest.mark.parametrize("name", sorted(p.name for p in (PLUGIN / "examples").glob("*.yaml")))
def test_example_recipes_validate(name):
    needs = {"alignmamba.yaml": ("aligner", "relaxed_ot")}.get(name)
    if needs and get_registry().find(*needs) is None:
        pytest.skip(f"{name} needs {needs[1]} from mmcore-plugin-ot, which is not installed")
    cwd = os.getcwd()
    os.chdir(REPO)  # the recipes' data paths are relative to the repository root
    try:
        rs = load_spec(str(PLUGIN / "examples" / name))
    finally:
        os.chdir(cwd)
    assert rs.parts["fuser"].entry.name == "interleaved_mamba"
