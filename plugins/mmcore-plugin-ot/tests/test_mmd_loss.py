"""mmd loss: zero for equal distributions, positive for shifted ones, missing instances left out."""

import pytest
import torch
from _ot_helpers import ctx, prefix_valid

from mmcore.batch import Batch
from mmcore.protocols import PipelineState
from mmcore_plugin_ot.mmd import mmd2
from mmcore_plugin_ot.mmd_loss import MMDLoss
from mmcore_plugin_ot.params import MMDParams

ZERO_ATOL = 1e-6  # float32 rounding of a V-statistic whose exact value is 0


def state(seqs, valid, missing=None, encoded=None):
    B = next(iter(seqs.values())).shape[0]
    feats = {m: torch.zeros(B, v.shape[1], 1) for m, v in valid.items()}
    batch = Batch(features=feats, valid=valid, labels=torch.zeros(B), missing=missing or {})
    rep = torch.zeros(B, 1)
    return PipelineState(batch, encoded or seqs, encoded or seqs, seqs, valid, rep, rep[:, 0])


def loss(**params) -> MMDLoss:
    return MMDLoss(MMDParams(**params), ctx(d=4))


def three(seed=0, B=4, T=6, d=4, shift=(0.0, 0.0)):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(B, T, d, generator=g)
    seqs = {"text": text, "audio": text.clone() + shift[0], "vision": text.clone() + shift[1]}
    valid = {m: prefix_valid([T, T - 2, 3, 1][:B], T) for m in seqs}
    return seqs, valid


@pytest.mark.parametrize("pool", ["tokens", "mean"])
def test_mmd_is_zero_when_the_distributions_are_equal(pool):
    seqs, valid = three()
    assert abs(float(loss(pool=pool)(state(seqs, valid)))) < ZERO_ATOL


@pytest.mark.parametrize("pool", ["tokens", "mean"])
def test_mmd_is_positive_when_a_modality_is_shifted(pool):
    seqs, valid = three(shift=(0.0, 2.0))
    assert float(loss(pool=pool)(state(seqs, valid))) > 0.05


def test_missing_instances_are_excluded():
    seqs, valid = three()
    B = seqs["text"].shape[0]
    missing = {m: torch.zeros(B, dtype=torch.bool) for m in seqs}
    missing["audio"][1] = True
    ref = float(loss()(state(seqs, valid, missing)))
    seqs["audio"][1] += 100.0  # a missing instance's features must not matter
    assert float(loss()(state(seqs, valid, missing))) == pytest.approx(ref, abs=1e-7)
    seqs["audio"][2] += 100.0  # a present one does
    assert float(loss()(state(seqs, valid, missing))) > ref + 0.1


def test_tokens_pool_is_the_mean_of_per_instance_mmd_over_the_anchor_pairs():
    seqs, valid = three(seed=1, shift=(0.5, -0.5))
    got = loss(sigma=(1.0,), median_scales=())(state(seqs, valid))
    expected = sum(mmd2(seqs[m], seqs["text"], x_valid=valid[m], y_valid=valid["text"]).mean()
                   for m in ("audio", "vision"))
    torch.testing.assert_close(got, expected)


def test_all_pairs_adds_the_pair_without_the_anchor():
    seqs, valid = three(seed=2, shift=(0.5, -0.5))
    anchor_only = float(loss(pairs="anchor", sigma=(2.0,), median_scales=())(state(seqs, valid)))
    av = float(mmd2(seqs["audio"], seqs["vision"], x_valid=valid["audio"], y_valid=valid["vision"], sigma=2.0).mean())
    all_pairs = float(loss(pairs="all", sigma=(2.0,), median_scales=())(state(seqs, valid)))
    assert all_pairs == pytest.approx(anchor_only + av, rel=1e-5)


def test_fixed_and_median_bandwidths_add_up():
    seqs, valid = three(seed=3, shift=(0.3, 0.0))
    both = float(loss(sigma=(1.0,), median_scales=(0.5, 2.0))(state(seqs, valid)))
    fixed = float(loss(sigma=(1.0,), median_scales=())(state(seqs, valid)))
    median = float(loss(median_scales=(0.5, 2.0))(state(seqs, valid)))
    assert both == pytest.approx(fixed + median, rel=1e-5)


def test_unbiased_estimator_can_be_negative_but_biased_cannot():
    g = torch.Generator().manual_seed(4)
    seqs = {m: torch.randn(8, 5, 4, generator=g) for m in ("text", "audio", "vision")}  # same law, new draws
    valid = {m: torch.ones(8, 5, dtype=torch.bool) for m in seqs}
    assert float(loss(estimator="biased")(state(seqs, valid))) > 0
    assert float(loss(estimator="unbiased")(state(seqs, valid))) < float(loss(estimator="biased")(state(seqs, valid)))


def test_encoded_reads_the_encoders_outputs_and_batch_valid():
    seqs, valid = three()
    shifted, _ = three(shift=(3.0, 3.0))
    s = state(seqs, valid, encoded=shifted)
    assert abs(float(loss(features="aligned")(s))) < ZERO_ATOL
    assert float(loss(features="encoded")(s)) > 0.05


def test_mmd_params_need_a_bandwidth():
    with pytest.raises(ValueError, match="at least one bandwidth"):
        MMDParams(sigma=(), median_scales=())


def test_bf16_autocast_gives_the_float32_value():
    seqs, valid = three(seed=5, shift=(0.5, 1.0))
    ref = float(loss()(state(seqs, valid)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss()(state(seqs, valid))
    assert got.dtype == torch.float32 and float(got) == pytest.approx(ref, rel=1e-6)
