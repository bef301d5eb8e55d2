"""The plugin passes mmcore's registry contract and a hypothesis property on its plans."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmcore.testing import check_component, contract_cases
from mmcore.testing.strategies import padded_batches

PROVIDER = "mmcore-attention-aligner"


def test_plugin_is_discovered_through_its_entry_point():
    assert ("aligner", "attention") in contract_cases(provider=PROVIDER)


@pytest.mark.parametrize("kind,name", contract_cases(provider=PROVIDER))
def test_contract(kind, name):
    check_component(kind, name)


@given(anchor=padded_batches(dim=8, max_batch=3), other=st.integers(1, 9))
def test_plan_rows_are_distributions_over_valid_frames(anchor, other):
    from mmcore.protocols import BuildContext
    from mmcore_attention_aligner.aligner import AttentionAligner
    from mmcore_attention_aligner.params import AttentionAlignerParams

    xa, va = (torch.from_numpy(a) for a in anchor)
    B = xa.shape[0]
    vm = torch.arange(other)[None, :] < torch.randint(1, other + 1, (B, 1))
    xm = torch.randn(B, other, 8, dtype=torch.float64)
    aligner = AttentionAligner(AttentionAlignerParams(anchor="text"), BuildContext(modalities={}, d_model=8)).double()
    out = aligner({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    plan = aligner.alignment_plans()["audio"]  # (B, T_a, T_m)
    np.testing.assert_allclose(plan.sum(-1).numpy(), 1.0, atol=1e-12)
    assert (plan[~vm[:, None, :].expand_as(plan)] == 0).all(), "padding never receives weight"
    assert out.seqs["audio"].shape == xa.shape


def test_installed_plugin_shows_in_mmcore_plugins_and_trains_from_a_spec(tmp_path):
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "mmcore.cli", "plugins", "--json"], capture_output=True, text=True)
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    assert plugins[PROVIDER]["status"] == "ok" and plugins[PROVIDER]["components"] == {"aligner": ["attention"]}

    from mmcore.spec import spec_from_dict
    from mmcore.train.run import train_run

    rs = spec_from_dict({
        "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 8},
        "encoders": {"default": {"name": "linear"}}, "aligner": {"name": "attention", "params": {"anchor": "text"}},
        "fuser": {"name": "concat_pool"}, "head": {"name": "regression_mlp"},
        "data": {"name": "synthetic", "params": {"n_train": 32, "n_valid": 16, "n_test": 16}},
        "train": {"epochs": 1, "batch_size": 16}})
    res = train_run(rs, str(tmp_path / "run"), progress=False)
    assert np.isfinite(res["test"]["mae"])
