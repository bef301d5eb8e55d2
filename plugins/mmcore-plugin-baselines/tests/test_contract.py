"""The registry contract over this plugin's components, their registration, and their docs sections."""

import glob
import math
import os

import pytest

from mmcore.testing import check_component
from mmcore.testing.plugin_contract import PluginContract


class TestPluginContract(PluginContract):
    provider = "mmcore-plugin-baselines"
    hook = "mmcore_plugin_baselines.plugin"
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    expected = {("fuser", "tfn"), ("fuser", "lmf"), ("fuser", "lf_dnn"), ("fuser", "ef_lstm"),
                ("fuser", "mfn"), ("fuser", "mfm"), ("fuser", "misa"), ("fuser", "mmsa_mult"),
                ("fuser", "self_mm"), ("head", "mmsa_output")}


@pytest.mark.parametrize("params", [{"output_range": [-3.0, 3.0]}, {"dropout": 0.5, "loss": "mse"}])
def test_contract_head_variants(params):
    check_component("head", "mmsa_output", params=params)


RECIPES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "baselines", "*.yaml")))


@pytest.mark.parametrize("path", RECIPES, ids=[os.path.basename(p) for p in RECIPES])
def test_recipe_trains_one_tiny_epoch(path, tmp_path):
    """Every examples/baselines recipe validates and trains one epoch on a tiny synthetic set."""
    from mmcore.spec import load_spec
    from mmcore.train.run import train_run

    tiny = ["data={name: synthetic, params: {n_train: 32, n_valid: 16, n_test: 16, dims: {text: 8, audio: 5, vision: 6}, "
            "lengths: {text: 6, audio: 9, vision: 7}}}", "train.epochs=1", "train.batch_size=16", "train.patience=null",
            f"output_dir={tmp_path}"]
    rs = load_spec(path, overrides=tiny)
    res = train_run(rs, str(tmp_path / "run"), progress=False)
    assert math.isfinite(res["test"]["mae"])
