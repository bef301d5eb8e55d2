"""Specs with the reconstruction imputer validate and train with every kind of fuser, the MGMR-Net recipe
validates, a bad alpha key is a positioned spec error, and one epoch runs under two-process DDP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mmcore.errors import SpecError
from mmcore.spec import load_spec, spec_from_dict
from mmcore.testing.distributed import run_distributed
from mmcore.train.run import train_run

REPO = Path(__file__).resolve().parents[3]

TINY_DATA = {"name": "synthetic", "params": {"n_train": 32, "n_valid": 16, "n_test": 16,
                                            "dims": {"text": 8, "audio": 6, "vision": 5},
                                            "lengths": {"text": 6, "audio": 9, "vision": 7}}}
IMPUTER = {"name": "mamba_reconstruction", "params": {"d_state": 4, "expand": 2, "alpha": {"text": 0.5}}}
MAMBA = {"depth": 1, "d_state": 4, "expand": 2}
# the composition is the point: the core's fusers, the Mamba plugin's interleaved fuser, and MGMR-Net's
# two-stage fusion (text-centric Bi-Mamba aligner, then the interleaved fuser)
PIPELINES = {
    "concat_pool": ({"name": "identity"}, {"name": "concat_pool"}),
    "mult": ({"name": "identity"}, {"name": "mult", "params": {"layers": 1, "self_layers": 0, "heads": 2}}),
    "interleaved_mamba": ({"name": "identity"}, {"name": "interleaved_mamba", "params": MAMBA}),
    "two_stage_mamba": ({"name": "bimamba_text_centric", "params": {"anchor": "text", **MAMBA}},
                        {"name": "interleaved_mamba", "params": {**MAMBA, "pool": "max"}}),
}


def tiny_spec(aligner, fuser, epochs=1, **changes) -> dict:
    spec = {"seed": 1, "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 8, "dropout": 0.1},
            "encoders": {"default": {"name": "linear"}}, "imputer": IMPUTER, "aligner": aligner, "fuser": fuser,
            "head": {"name": "regression_mlp", "params": {"hidden": 8}}, "data": TINY_DATA,
            "missing": {"train": [{"type": "temporal", "rate": 0.3}], "eval": [{"type": "temporal", "rate": 0.3}]},
            "train": {"epochs": epochs, "batch_size": 16, "lr": 3e-3, "select_metric": "mae", "device": "cpu",
                      "num_threads": 1}}
    spec.update(changes)
    return spec


@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_recon_imputer_trains_with_every_fuser_and_logs_a_positive_recon_loss(pipeline, tmp_path):
    res = train_run(spec_from_dict(tiny_spec(*PIPELINES[pipeline])), str(tmp_path / "run"), progress=False)
    assert all(math.isfinite(res["test"][k]) for k in ("mae", "corr"))
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert math.isfinite(row["train_recon"]) and row["train_recon"] > 0, row


def test_masking_rate_zero_trains_with_a_zero_recon_loss(tmp_path):
    spec = tiny_spec(*PIPELINES["concat_pool"], missing={"train": [], "eval": []})
    train_run(spec_from_dict(spec), str(tmp_path / "run"), progress=False)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_recon"] == 0.0


def test_alpha_for_an_undeclared_modality_is_a_spec_error_at_its_key():
    bad = {**IMPUTER, "params": {"alpha": {"txt": 1.0}}}
    with pytest.raises(SpecError, match=r"imputer\.params\.alpha: alpha names modality 'txt', which the spec does "
                                        r"not declare \(declared: text, audio, vision\)"):
        spec_from_dict(tiny_spec(*PIPELINES["concat_pool"], imputer=bad))


def test_mgmr_net_recipe_validates():
    rs = load_spec(str(REPO / "examples" / "mgmr_net.yaml"))
    assert rs.spec.imputer.name == "mamba_reconstruction"
    assert rs.spec.fuser.name == "interleaved_mamba"


def test_one_epoch_under_two_process_ddp_agrees_across_ranks(tmp_path):
    per_rank = run_distributed(tiny_spec(*PIPELINES["concat_pool"]), 2, str(tmp_path / "ddp"))
    assert math.isfinite(per_rank[0]["test"]["mae"]) and per_rank[0]["test"] == per_rank[1]["test"]
