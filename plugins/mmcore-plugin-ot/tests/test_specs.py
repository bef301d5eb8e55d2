"""Specs that use the plugin validate and train; with the plugin hidden they fail with an install hint."""

import json
import math
import warnings

import pytest

from mmcore.errors import SpecError
from mmcore.registry import reset_registry
from mmcore.spec import spec_from_dict
from mmcore.testing.plugin_contract import plugins_hidden
from mmcore_plugin_ot.relaxed_ot import DeprecatedOptionWarning
from mmcore.train.run import train_run

TINY_DATA = {"name": "synthetic", "params": {"n_train": 32, "n_valid": 16, "n_test": 16,
                                            "dims": {"text": 8, "audio": 6, "vision": 5},
                                            "lengths": {"text": 6, "audio": 9, "vision": 7}}}


def tiny_spec(aligner, fuser=None, losses=None, missing=None):
    return {"seed": 1, "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 8, "dropout": 0.0},
            "encoders": {"default": {"name": "linear"}}, "aligner": aligner,
            "fuser": fuser or {"name": "concat_pool"}, "head": {"name": "regression_mlp", "params": {"hidden": 8}},
            "losses": losses or {}, "data": TINY_DATA,
            "missing": missing or {"train": [{"type": "instance", "rate": 0.3}], "eval": []},
            "train": {"epochs": 1, "batch_size": 16, "lr": 3e-3}}


CASES = {
    "relaxed_ot+mmd": tiny_spec({"name": "relaxed_ot"},
                                losses={"mmd": {"weight": 0.1, "params": {"features": "aligned", "pool": "tokens"}}}),
    "relaxed_ot_entropic": tiny_spec({"name": "relaxed_ot",
                                      "params": {"plan": "entropic", "normalize": "barycentric"}}),
    "sinkhorn_window+mmd_mean": tiny_spec({"name": "sinkhorn", "params": {"window": 1, "reg": 0.2}},
                                          losses={"mmd": {"weight": 0.1, "params": {"pool": "mean", "pairs": "all"}}}),
    "gmm_prototype_ot+mult": tiny_spec({"name": "gmm_prototype_ot", "params": {"num_prototypes": 3}},
                                       fuser={"name": "mult", "params": {"layers": 1, "self_layers": 0, "heads": 2}},
                                       losses={"homogeneity": {"weight": 0.05}}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_spec_validates_and_trains_one_epoch(name, tmp_path):
    rs = spec_from_dict(CASES[name])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("error")  # no ConvergenceWarning (or anything else) on the default knobs
        warnings.simplefilter("always", DeprecatedOptionWarning)  # but the deprecated alias says so
        res = train_run(rs, str(tmp_path / "run"), progress=False)
    assert bool(seen) == (name == "relaxed_ot_entropic"), [str(w.message) for w in seen]
    assert math.isfinite(res["test"]["mae"])
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    aux = {"relaxed_ot+mmd": ["mmd"], "sinkhorn_window+mmd_mean": ["mmd"],
           "gmm_prototype_ot+mult": ["decoupling", "prototype_ot", "prototype_calibration", "homogeneity"]}
    for term in aux.get(name, []):
        assert math.isfinite(row[f"train_{term}"]), (term, row)


def test_gmm_prototype_ot_feeds_common_and_unique_streams_to_the_fuser():
    from mmcore.builder import build

    model = build(spec_from_dict(CASES["gmm_prototype_ot+mult"]), data_info=None)
    assert sorted(model.fuser.streams) == sorted(["text", "audio", "vision", "text_unique", "audio_unique",
                                                  "vision_unique"])


def test_plugin_params_are_checked_with_positions():
    with pytest.raises(SpecError, match=r"aligner\.params\.max_iters: unknown key\n  did you mean 'max_iter'\?"):
        spec_from_dict(tiny_spec({"name": "sinkhorn", "params": {"max_iters": 5}}))
    not_a_modality = r"aligner\.params\.anchor: 'txt' is not a declared modality\n  did you mean 'text'\?"
    with pytest.raises(SpecError, match=not_a_modality):
        spec_from_dict(tiny_spec({"name": "sinkhorn", "params": {"anchor": "txt"}}))
    with pytest.raises(SpecError, match=r"losses\.mmd\.params\.pool"):
        spec_from_dict(tiny_spec({"name": "identity"}, losses={"mmd": {"weight": 1.0, "params": {"pool": "max"}}}))


@pytest.fixture
def plugin_hidden():
    with plugins_hidden():
        yield


def test_hidden_plugin_fails_validation_with_the_install_hint(plugin_hidden):
    with pytest.raises(SpecError) as e:
        spec_from_dict(tiny_spec({"name": "relaxed_ot"}))
    text = str(e.value)
    assert "unknown aligner 'relaxed_ot'" in text
    assert "'relaxed_ot' comes from mmcore-plugin-ot, which is not installed; run: pip install mmcore-plugin-ot" in text


def test_hidden_plugin_typo_gets_did_you_mean_and_the_install_hint(plugin_hidden):
    with pytest.raises(SpecError) as e:
        spec_from_dict(tiny_spec({"name": "relaxd_ot"}, losses={"mmd": {"weight": 1.0}}))
    text = str(e.value)
    assert "did you mean 'relaxed_ot'? it comes from mmcore-plugin-ot, which is not installed; " \
           "run: pip install mmcore-plugin-ot" in text
    assert "loss 'mmd' comes from mmcore-plugin-ot, which is not installed; run: pip install mmcore-plugin-ot" in text


def test_installed_plugin_typo_gets_did_you_mean(fresh):
    with pytest.raises(SpecError, match=r"did you mean 'relaxed_ot' \(mmcore-plugin-ot 0\.1\.0\)"):
        spec_from_dict(tiny_spec({"name": "relaxd_ot"}))


@pytest.fixture
def fresh():
    reset_registry()
    yield
    reset_registry()


def test_alignmamba_and_decalign_pipelines_run_one_epoch_under_two_process_ddp(tmp_path):
    """GMM prototypes (buffers refit per batch) and the batch-level MMD under DistributedDataParallel:
    every rank finishes, and all ranks report the same metrics (computed on gathered predictions)."""
    from mmcore.testing.distributed import DistributedJob, run_distributed_jobs

    jobs = [DistributedJob(CASES[name], str(tmp_path / name)) for name in ("relaxed_ot+mmd", "gmm_prototype_ot+mult")]
    for per_rank in run_distributed_jobs(jobs, 2):
        assert per_rank[0]["test"] == per_rank[1]["test"]
        assert all(math.isfinite(v) for v in per_rank[0]["test"].values())
