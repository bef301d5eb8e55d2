"""Alignment accuracy of the OT aligners on synthetic data with a known alignment (results.json, mmcore eval)."""

import json
import os

import pytest

from mmcore.cli import main
from mmcore.spec import spec_from_dict
from mmcore.train.run import train_run


def _spec(aligner: dict) -> dict:
    return {"seed": 0, "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 8, "dropout": 0.0},
            "encoders": {"default": {"name": "linear"}}, "aligner": aligner, "fuser": {"name": "concat_pool"},
            "head": {"name": "regression_mlp"}, "train": {"epochs": 1, "batch_size": 16},
            "data": {"name": "synthetic", "params": {"n_train": 32, "n_valid": 16, "n_test": 16, "misalignment": 0.5}}}


@pytest.mark.parametrize("aligner", [{"name": "relaxed_ot", "params": {"anchor": "text"}},
                                     {"name": "sinkhorn", "params": {"anchor": "text"}},
                                     {"name": "gmm_prototype_ot", "params": {"anchor": "text", "num_prototypes": 3}}],
                         ids=lambda a: a["name"])
def test_results_report_alignment_against_the_truth_and_the_floors(tmp_path, aligner):
    res = train_run(spec_from_dict(_spec(aligner)), str(tmp_path / "run"), progress=False)
    al = res["alignment"]
    assert al["anchor"] == "text" and set(al) >= {"audio", "vision", "mean", "split"}
    for m in ("audio", "vision"):
        assert al[m]["tokens"] > 0
        for k in ("top1", "mass", "uniform_top1", "uniform_mass", "proportional_top1", "proportional_mass"):
            assert 0.0 <= al[m][k] <= 1.0
    with open(tmp_path / "run" / "results.json") as f:
        assert json.load(f)["alignment"]["mean"] == pytest.approx(al["mean"])


def test_eval_alignment_writes_a_file_and_says_so(tmp_path, capsys):
    run = str(tmp_path / "run")
    train_run(spec_from_dict(_spec({"name": "relaxed_ot", "params": {"anchor": "text"}})), run, progress=False)
    assert main(["eval", run, "--alignment"]) == 0
    out = capsys.readouterr().out
    assert "anchor text" in out and "wrote" in out and "proportional" in out
    with open(os.path.join(run, "alignment.json")) as f:
        assert json.load(f)["audio"]["tokens"] > 0


def test_authors_decalign_has_no_token_plans_and_the_run_still_finishes(tmp_path):
    res = train_run(spec_from_dict(_spec({"name": "gmm_prototype_ot",
                                          "params": {"anchor": "text", "num_prototypes": 3, "reference": "authors"}})),
                    str(tmp_path / "run"), progress=False)
    assert "alignment" not in res
