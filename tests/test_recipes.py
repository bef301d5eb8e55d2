"""Every recipe in examples/ validates and trains one tiny epoch on synthetic data.

A recipe that needs an uninstalled plugin is skipped with the plugin's name (the core-only pass of
scripts/test.sh); with every plugin installed (its third pass) all of them run.
"""

import glob
import math
import os
import re

import pytest

from conftest import REPO
from mmcore.errors import SpecError
from mmcore.spec import load_spec
from mmcore.train.run import train_run

RECIPES = sorted(glob.glob(os.path.join(REPO, "examples", "*.yaml")))
TINY = ('data={name: synthetic, params: {n_train: 48, n_valid: 16, n_test: 16, '
        'dims: {text: 12, audio: 6, vision: 5}, lengths: {text: 8, audio: 10, vision: 9}}}')


def test_there_is_a_recipe_per_paper_and_two_recombinations():
    names = {os.path.basename(p) for p in RECIPES}
    assert {"alignmamba.yaml", "decalign.yaml", "mgmr_net.yaml", "mm_align.yaml", "baseline.yaml"} <= names
    assert len([n for n in names if n.startswith("mix_")]) >= 2


@pytest.mark.parametrize("path", RECIPES, ids=[os.path.basename(p) for p in RECIPES])
def test_recipe_trains_one_tiny_epoch_on_synthetic_data(path, tmp_path):
    overrides = [TINY, "train.epochs=1", "train.batch_size=16", "train.patience=null", f"output_dir={tmp_path}"]
    try:
        rs = load_spec(path, overrides=overrides)
    except SpecError as e:
        needed = sorted(set(re.findall(r"pip install (mmcore-plugin-[a-z]+)", str(e))))
        if needed:
            pytest.skip(f"needs {', '.join(needed)} (not installed in this pass)")
        raise
    res = train_run(rs, str(tmp_path / "run"), progress=False)
    assert math.isfinite(res["test"]["mae"])


LAB = sorted(glob.glob(os.path.join(REPO, "examples", "lab", "*.yaml")))
LAB_TINY = ["data.params.n_train=48", "data.params.n_valid=16", "data.params.n_test=16", "train.epochs=1",
            "train.batch_size=16", "train.patience=null"]


@pytest.mark.parametrize("path", LAB, ids=[os.path.basename(p) for p in LAB])
def test_lab_recipe_trains_one_tiny_cell(path, tmp_path):
    """Each mechanism-lab experiment (docs/lab.md) runs one tiny cell of its own generator setting."""
    try:
        rs = load_spec(path, overrides=LAB_TINY + [f"output_dir={tmp_path}"])
    except SpecError as e:
        needed = sorted(set(re.findall(r"pip install (mmcore-plugin-[a-z]+)", str(e))))
        if needed:
            pytest.skip(f"needs {', '.join(needed)} (not installed in this pass)")
        raise
    assert rs.spec.data.name == "synthetic", "lab recipes run on the synthetic dataset (it knows the truth)"
    res = train_run(rs, str(tmp_path / "run"), progress=False)
    assert math.isfinite(res["test"]["mae"])
