"""gmm_prototype_ot (DecAlign): EM prototypes, multi-marginal plan, aux losses, and no NaN anywhere."""

import pytest
import torch
from _ot_helpers import ctx, prefix_valid
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcore.registry import get_registry
from mmcore_plugin_ot.decoupling import decoupling_loss, homogeneity_loss
from mmcore_plugin_ot.gmm_prototype_ot import AUX_LOSSES, GmmPrototypeOTAligner
from mmcore_plugin_ot.params import GmmPrototypeOTParams

MODS = ("text", "audio", "vision")
MARGINAL_ATOL = 1e-4  # the plan stops at tol=1e-5 (L2 per marginal)


def build(K=7, d=8, mods=MODS, **params) -> GmmPrototypeOTAligner:
    torch.manual_seed(0)
    return GmmPrototypeOTAligner(GmmPrototypeOTParams(num_prototypes=K, **params), ctx(d=d, modalities=mods))


def inputs(B=3, lengths=(6, 9, 7), d=8, seed=0, scale=1.0, mods=MODS):
    g = torch.Generator().manual_seed(seed)
    seqs = {m: scale * torch.randn(B, T, d, generator=g) for m, T in zip(mods, lengths)}
    valid = {m: prefix_valid([T] + [max(1, T - 2 - i) for i in range(B - 1)], T) for m, T in zip(mods, lengths)}
    return seqs, valid


def assert_all_finite(al, out):
    for k, v in out.seqs.items():
        assert torch.isfinite(v.float()).all(), k
    for k, v in out.aux.items():
        assert v.dim() == 0 and torch.isfinite(v), (k, v)
    sum(out.aux.values()).backward(retain_graph=True)
    sum(v.float().sum() for v in out.seqs.values()).backward()
    for name, p in al.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_em_recovers_the_means_of_well_separated_clusters():
    centers = torch.tensor([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0]])
    al = build(K=3, d=2, mods=("text", "audio"))
    with torch.no_grad():
        for lin in al.unique.values():
            lin.weight.copy_(torch.eye(2))  # unique features = the inputs
    g = torch.Generator().manual_seed(1)
    for _ in range(4):  # a few batches from the same mixture; EM starts where the last batch ended
        pick = torch.randint(0, 3, (10, 30), generator=g)
        x = centers[pick] + torch.randn(10, 30, 2, generator=g)
        v = torch.ones(10, 30, dtype=torch.bool)
        al({"text": x, "audio": x.flip(1)}, {"text": v, "audio": v})
    for i in range(2):
        means = al.proto_means[i]
        order = torch.cdist(centers, means).argmin(1)
        assert sorted(order.tolist()) == [0, 1, 2], "one prototype per cluster"
        torch.testing.assert_close(means[order], centers, atol=0.3, rtol=0)
        torch.testing.assert_close(al.proto_log_weights[i].exp(), torch.full((3,), 1 / 3), atol=0.08, rtol=0)


def test_no_nan_with_more_prototypes_than_tokens():
    al = build(K=7)
    seqs, valid = inputs(B=1, lengths=(1, 1, 1))
    assert_all_finite(al, al(seqs, valid))


def test_no_nan_with_duplicate_points():
    al = build(K=4)
    seqs, valid = inputs()
    seqs = {m: torch.ones_like(x) for m, x in seqs.items()}
    for _ in range(3):
        out = al(seqs, valid)
    assert_all_finite(al, out)
    assert (al.proto_vars >= al.p.var_floor).all()


def test_no_nan_with_tiny_variance():
    al = build(K=5)
    seqs, valid = inputs(scale=1e-6)
    assert_all_finite(al, al(seqs, valid))


def test_no_nan_with_bfloat16_input():
    al = build(K=7)
    seqs, valid = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = al({m: x.bfloat16() for m, x in seqs.items()}, valid)
    assert out.seqs["text"].dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 for v in out.aux.values())
    assert_all_finite(al, out)


def test_multimarginal_plan_marginals_match_the_prototype_weights():
    al = build(K=4)
    seqs, valid = inputs(seed=2)
    al(seqs, valid)
    T = al.last_joint_plan  # (K, K, K)
    assert T.shape == (4, 4, 4) and (T >= 0).all()
    for i in range(3):
        others = tuple(k for k in range(3) if k != i)
        weights = al.proto_log_weights[i].exp()
        torch.testing.assert_close(T.sum(others), weights / weights.sum(), atol=MARGINAL_ATOL, rtol=0)


def test_aux_losses_are_the_declared_ones_and_finite():
    al = build()
    seqs, valid = inputs(seed=3)
    out = al(seqs, valid)
    assert set(out.aux) == set(AUX_LOSSES) == set(get_registry().get("aligner", "gmm_prototype_ot").aux_losses)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in out.aux.values())
    assert float(out.aux["prototype_ot"].detach()) >= 0 and float(out.aux["prototype_calibration"].detach()) >= 0


def test_outputs_are_common_and_unique_streams_zero_on_padding():
    al = build()
    assert al.output_streams == ["text", "audio", "vision", "text_unique", "audio_unique", "vision_unique"]
    seqs, valid = inputs(seed=4)
    out = al(seqs, valid)
    assert list(out.seqs) == al.output_streams
    for s in al.output_streams:
        m = s.removesuffix("_unique")
        assert out.seqs[s].shape == seqs[m].shape and torch.equal(out.valid[s], valid[m])
        assert (out.seqs[s][~valid[m]] == 0).all()
    torch.testing.assert_close(out.seqs["audio"], al.common(seqs["audio"]) * valid["audio"].unsqueeze(-1))


def test_evaluation_does_not_move_the_prototypes_and_training_does():
    al = build(K=3)
    seqs, valid = inputs(seed=5)
    al(seqs, valid)
    before = al.proto_means.clone()
    al.eval()
    al(inputs(seed=6)[0], valid)
    assert torch.equal(al.proto_means, before)
    al.train()
    al(inputs(seed=6)[0], valid)
    assert not torch.equal(al.proto_means, before)


def test_prototypes_are_saved_with_the_model():
    al = build(K=3)
    seqs, valid = inputs(seed=7)
    al(seqs, valid)
    fresh = build(K=3)
    fresh.load_state_dict(al.state_dict())
    assert torch.equal(fresh.proto_means, al.proto_means) and bool(fresh.proto_ready.all())


@pytest.mark.parametrize("B,scale", [(3, 1.0), (1, 30.0)])  # (1, 30): most prototypes own none of the frames
def test_token_plans_rows_sum_to_one_over_T_anchor_and_skip_padding(B, scale):
    al = build(K=4)
    al(*inputs(seed=8))
    al.eval()
    seqs, valid = inputs(B=B, seed=9, scale=scale)
    al(seqs, valid)
    plans = al.alignment_plans()
    assert set(plans) == {"audio", "vision"} and al.anchor == "text"
    va = valid["text"]
    for m, P in plans.items():
        assert P.shape == (B, seqs["text"].shape[1], seqs[m].shape[1])
        torch.testing.assert_close(P.sum(2), va / va.sum(1, keepdim=True), atol=1e-5, rtol=0)
        assert (P[~va] == 0).all() and (P.transpose(1, 2)[~valid[m]] == 0).all()


def test_decoupling_cosine_is_one_for_equal_and_zero_for_orthogonal_features():
    v = torch.ones(2, 3, dtype=torch.bool)
    u = torch.randn(2, 3, 4)
    assert float(decoupling_loss(u, 2 * u, v)) == pytest.approx(1.0, abs=1e-6)
    a, b = torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    a[..., 0], b[..., 1] = 1.0, 1.0
    assert float(decoupling_loss(a, b, v)) == 0.0
    assert float(decoupling_loss(u, -u, v)) == pytest.approx(-1.0, abs=1e-6)
    assert float(decoupling_loss(u, -u, v, squared=True)) == pytest.approx(1.0, abs=1e-6)


def test_homogeneity_is_zero_for_identical_modalities_and_positive_when_shifted():
    x = torch.randn(4, 5, 3)
    v = prefix_valid([5, 4, 2, 1], 5)
    same = homogeneity_loss({"a": x, "b": x.clone()}, {"a": v, "b": v}, var_floor=1e-4, sigma=None)
    assert abs(float(same)) < 1e-6
    shifted = homogeneity_loss({"a": x, "b": x + 1.0}, {"a": v, "b": v}, var_floor=1e-4, sigma=None)
    assert float(shifted) > 0.1


@settings(max_examples=15)
@given(B=st.integers(1, 3), lengths=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
       K=st.integers(1, 8), scale=st.sampled_from([1e-6, 1.0, 1e3]), seed=st.integers(0, 2**16),
       constant=st.booleans())
def test_random_batches_never_give_nan(B, lengths, K, scale, seed, constant):
    al = build(K=K, d=4)
    seqs, valid = inputs(B=B, lengths=lengths, d=4, seed=seed, scale=scale)
    if constant:
        seqs = {m: torch.full_like(x, scale) for m, x in seqs.items()}
    for _ in range(2):  # the second call starts EM from the stored prototypes
        out = al(seqs, valid)
    assert_all_finite(al, out)


def test_one_modality_has_nothing_to_align_and_still_trains():
    al = build(K=3, mods=("text",))
    seqs, valid = inputs(lengths=(5,), mods=("text",))
    out = al(seqs, valid)
    assert float(out.aux["prototype_ot"].detach()) == 0.0 and float(out.aux["homogeneity"].detach()) == 0.0
    assert al.alignment_plans() == {} and al.last_joint_plan is None
    assert_all_finite(al, out)


def test_rows_with_a_missing_modality_do_not_move_the_statistics():
    """accepts_missing: the aux losses computed with missing rows equal those on the observed rows alone."""
    import torch

    from mmcore.protocols import BuildContext, ModalityInfo
    from mmcore_plugin_ot.gmm_prototype_ot import GmmPrototypeOTAligner
    from mmcore_plugin_ot.params import GmmPrototypeOTParams

    mods = {m: ModalityInfo(m, 8, 6) for m in ("text", "audio", "vision")}
    ctx = BuildContext(modalities=mods, d_model=8)
    g = torch.Generator().manual_seed(0)
    seqs = {m: torch.randn(4, 6, 8, generator=g) for m in mods}
    valid = {m: torch.ones(4, 6, dtype=torch.bool) for m in mods}
    missing = {m: torch.tensor([False, False, False, m == "audio"]) for m in mods}

    def aux(seqs, valid, missing):
        torch.manual_seed(0)
        aligner = GmmPrototypeOTAligner(GmmPrototypeOTParams(), ctx).eval()
        return aligner(seqs, valid, missing=missing).aux

    with_missing = aux(seqs, valid, missing)
    junk = {m: x.clone() for m, x in seqs.items()}
    junk["audio"][3] = 100.0  # whatever the absent row holds must not matter
    assert all(torch.allclose(with_missing[k], v) for k, v in aux(junk, valid, missing).items())
    differs = aux(junk, valid, {m: torch.zeros(4, dtype=torch.bool) for m in mods})
    assert not torch.allclose(differs["homogeneity"], with_missing["homogeneity"])


@pytest.mark.parametrize("reference", ["mmcore", "authors"])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3, 1e6])
def test_statistics_stay_finite_up_to_the_documented_scale(reference, scale):
    # the moments, Bures costs and MMD grow as |x|^4; below MAX_ABS every loss and gradient is finite
    al = build(reference=reference)
    assert_all_finite(al, al(*inputs(scale=scale)))


@pytest.mark.parametrize("reference", ["mmcore", "authors"])
@pytest.mark.parametrize("scale", [1e10, 1e19, 1e30])
def test_features_beyond_the_range_get_one_clear_error(reference, scale):
    # before: homogeneity = inf from 1e10, an unexplained "cost has NaN" ValueError from 1e19
    from mmcore.errors import MmcoreUserError, NumericalRangeError

    with pytest.raises(NumericalRangeError, match=r"text features are as large as .*need \|x\| <= 1e\+08") as e:
        build(reference=reference)(*inputs(scale=scale))
    assert isinstance(e.value, MmcoreUserError) and "standardize" in str(e.value)  # the CLI prints it, no traceback


def test_non_finite_valid_features_get_one_clear_error_and_padding_does_not():
    from mmcore.errors import NumericalRangeError

    seqs, valid = inputs()
    seqs["audio"][-1, -1] = float("nan")  # a padded position of the last row: ignored
    assert not bool(valid["audio"][-1, -1])
    build()(seqs, valid)
    seqs["audio"][0, 0] = float("inf")  # a valid token
    with pytest.raises(NumericalRangeError, match="audio features are not finite"):
        build()(seqs, valid)


def test_prototype_losses_return_the_plan_and_write_no_state():
    """No hidden side effects: the loss terms return T* and leave the module alone; forward stores the plot state."""
    al = build(K=3).eval()  # eval: refitting does not move the stored prototypes either
    seqs, valid = inputs(seed=4)
    al(seqs, valid)
    state = dict(vars(al))
    uni = {m: torch.where(valid[m].unsqueeze(-1), al.unique[m](seqs[m]), 0.0) for m in MODS}  # as forward
    with torch.no_grad():
        gmms, resp = al._fit_prototypes(uni, valid)
        ot, cal, T = al._prototype_losses(gmms, resp, uni, valid)
    assert vars(al).keys() == state.keys() and all(vars(al)[k] is v for k, v in state.items())
    torch.testing.assert_close(T, al.last_joint_plan, rtol=0, atol=1e-6)  # what forward stored, from the same input
