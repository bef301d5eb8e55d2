"""relaxed_ot: AlignMamba's relaxed plan (Eq. 5) and projection (Eq. 6), and the deprecated entropic option."""

import warnings

import pytest
import torch
import yaml
from _ot_helpers import ctx, prefix_valid

from mmcore_plugin_ot.params import RelaxedOTParams, SinkhornParams
from mmcore_plugin_ot.relaxed_ot import DeprecatedOptionWarning, RelaxedOTAligner
from mmcore_plugin_ot.sinkhorn_aligner import SinkhornAligner

# the tests of plan: entropic below check the deprecated alias still computes what it did
alias_warns = pytest.mark.filterwarnings("ignore::mmcore_plugin_ot.relaxed_ot.DeprecatedOptionWarning")

MARGINAL_ATOL = 1e-4  # the entropic plan stops at tol=1e-5 (L2 over the columns); rows are exact


def ones(T: int) -> torch.Tensor:
    """A (1, T) all-valid mask."""
    return torch.ones(1, T, dtype=torch.bool)


def aligner(**params) -> RelaxedOTAligner:
    return RelaxedOTAligner(RelaxedOTParams(**params), ctx(d=8, modalities=("text", "audio")))


def matched_pair(src, T_a=5, d=8, seed=0, noise=1e-3):
    """An anchor (1, T_a, d) and frames (1, len(src), d) where frame i is a rescaled noisy copy of token src[i]."""
    g = torch.Generator().manual_seed(seed)
    xa = torch.randn(1, T_a, d, generator=g, dtype=torch.float64)
    scale = torch.rand(len(src), 1, generator=g, dtype=torch.float64) + 0.5  # cosine ignores the scale
    xm = (xa[0, src] * scale + noise * torch.randn(len(src), d, generator=g, dtype=torch.float64)).unsqueeze(0)
    return xa, xm


def test_relaxed_plan_maps_every_frame_to_its_source_token():
    src = [3, 3, 0, 1, 1, 4, 2, 2, 2]  # shifted and permuted: frames out of the anchor's order, some repeated
    xa, xm = matched_pair(src)
    al = aligner().double()
    al({"text": xa, "audio": xm}, {"text": ones(5), "audio": ones(9)})
    plan = al.alignment_plans()["audio"][0]  # (T_a, T_m)
    assert plan.argmax(0).tolist() == src
    assert torch.equal(plan.sum(0), torch.full((9,), 1 / 9, dtype=plan.dtype))


def test_plan_columns_hold_one_over_T_m_and_rows_count_their_frames():
    src = [0, 0, 0, 2, 4]
    xa, xm = matched_pair(src)
    al = aligner().double()
    al({"text": xa, "audio": xm}, {"text": ones(5), "audio": ones(5)})
    plan = al.alignment_plans()["audio"][0]  # rows: anchor tokens, columns: frames
    assert ((plan > 0).sum(0) == 1).all(), "each frame goes to exactly one anchor token"
    torch.testing.assert_close(plan.sum(1), torch.tensor([3, 0, 1, 0, 1], dtype=plan.dtype) / 5)


def test_output_equals_the_papers_formula_by_hand():
    # X_l: two language tokens; X_v: three frames. Cosine costs send frames 0, 2 -> token 0 and frame 1 -> token 1.
    xl = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    xv = torch.tensor([[[2.0, 0.1], [0.1, 3.0], [1.0, 0.2]]], dtype=torch.float64)
    M = torch.tensor([[1 / 3, 0], [0, 1 / 3], [1 / 3, 0]], dtype=torch.float64)  # Eq. 5, (T_v, T_l)
    expected = M.T @ xv[0]  # Eq. 6: [[(2 + 1)/3, (0.1 + 0.2)/3], [0.1/3, 3/3]]
    al = RelaxedOTAligner(RelaxedOTParams(), ctx(d=2, modalities=("text", "vision"))).double()
    out = al({"text": xl, "vision": xv}, {"text": ones(2), "vision": ones(3)})
    torch.testing.assert_close(out.seqs["vision"][0], expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(al.alignment_plans()["vision"][0], M.T, rtol=0, atol=0)
    assert torch.equal(out.seqs["text"], xl)


def test_barycentric_gives_the_mean_of_the_matched_frames_and_zero_when_none():
    xl = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]], dtype=torch.float64)
    xv = torch.tensor([[[2.0, 0.1], [0.1, 3.0], [1.0, 0.2]]], dtype=torch.float64)
    al = RelaxedOTAligner(RelaxedOTParams(normalize="barycentric"), ctx(d=2, modalities=("text", "vision"))).double()
    out = al({"text": xl, "vision": xv}, {"text": ones(3), "vision": ones(3)})
    expected = torch.tensor([[1.5, 0.15], [0.1, 3.0], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(out.seqs["vision"][0], expected)


@alias_warns
@pytest.mark.parametrize("plan", ["relaxed", "entropic"])
def test_padding_gets_no_mass_and_changes_nothing(plan):
    g = torch.Generator().manual_seed(1)
    xa, xm = torch.randn(3, 6, 8, generator=g), torch.randn(3, 9, 8, generator=g)
    va, vm = prefix_valid([6, 4, 1], 6), prefix_valid([9, 2, 5], 9)
    al = aligner(plan=plan)
    out = al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    P = al.alignment_plans()["audio"]  # (B, T_a, T_m)
    assert (P[~va] == 0).all(), "padded anchor rows receive nothing"
    assert (P.transpose(1, 2)[~vm] == 0).all(), "padded frames send nothing"
    assert (out.seqs["audio"][~va] == 0).all()
    noisy_a = torch.where(va.unsqueeze(-1), xa, torch.full_like(xa, 1e6))
    noisy_m = torch.where(vm.unsqueeze(-1), xm, torch.full_like(xm, float("nan")))
    again = al({"text": noisy_a, "audio": noisy_m}, {"text": va, "audio": vm})
    torch.testing.assert_close(again.seqs["audio"], out.seqs["audio"])
    assert torch.equal(again.valid["audio"], va)


@alias_warns
def test_entropic_plan_marginals_match():
    g = torch.Generator().manual_seed(2)
    xa, xm = torch.randn(3, 6, 8, generator=g), torch.randn(3, 9, 8, generator=g)
    va, vm = prefix_valid([6, 4, 1], 6), prefix_valid([9, 2, 5], 9)
    al = aligner(plan="entropic", tol=1e-5, max_iter=1000)
    al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    P = al.alignment_plans()["audio"]
    n_a, n_m = va.sum(1, keepdim=True), vm.sum(1, keepdim=True)
    torch.testing.assert_close(P.sum(2), va / n_a, rtol=0, atol=MARGINAL_ATOL)
    torch.testing.assert_close(P.sum(1), vm / n_m, rtol=0, atol=MARGINAL_ATOL)
    assert (P >= 0).all()


def test_gradient_reaches_each_valid_frame_through_the_projection():
    src = [1, 1, 0, 2]
    xa, xm = matched_pair(src, T_a=3)
    xm = xm.clone().requires_grad_()
    vm = prefix_valid([3], 4)  # the last frame is padding
    out = aligner().double()({"text": xa, "audio": xm}, {"text": ones(3), "audio": vm})
    out.seqs["audio"].sum().backward()
    expected = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0], dtype=torch.float64).view(1, 4, 1).expand_as(xm)
    torch.testing.assert_close(xm.grad, expected)  # d(M^T X)/dX = M^T: 1/T_m on valid frames, 0 on padding


@alias_warns
def test_bfloat16_input_gives_bfloat16_output_without_nan():
    g = torch.Generator().manual_seed(3)
    xa, xm = torch.randn(2, 5, 8, generator=g).bfloat16(), torch.randn(2, 7, 8, generator=g).bfloat16()
    for plan in ("relaxed", "entropic"):
        valid = {"text": prefix_valid([5, 2], 5), "audio": prefix_valid([7, 1], 7)}
        out = aligner(plan=plan)({"text": xa, "audio": xm}, valid)
        assert out.seqs["audio"].dtype == torch.bfloat16 and torch.isfinite(out.seqs["audio"].float()).all()


def test_unknown_anchor_is_a_clear_error():
    with pytest.raises(ValueError, match="anchor 'words' is not a modality"):
        RelaxedOTAligner(RelaxedOTParams(anchor="words"), ctx())


@pytest.mark.parametrize("normalize", ["paper", "barycentric"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropic_plan_is_the_sinkhorn_aligner_it_names(normalize, dtype):
    """plan: entropic is a deprecated alias: it warns with a sinkhorn spec, and that spec computes the same plans,
    outputs and gradients (to 1e-6; they share one implementation, so in fact bit for bit)."""
    g = torch.Generator().manual_seed(4)
    c = ctx(d=8)
    seqs = {m: torch.randn(3, T, 8, generator=g, dtype=dtype) for m, T in (("text", 6), ("audio", 9), ("vision", 5))}
    valid = {m: prefix_valid(n, T) for m, n, T in (("text", [6, 4, 1], 6), ("audio", [9, 3, 0], 9),
                                                     ("vision", [5, 5, 2], 5))}
    with pytest.warns(DeprecatedOptionWarning, match=r"relaxed_ot: plan: entropic is deprecated") as seen:
        alias = RelaxedOTAligner(RelaxedOTParams(plan="entropic", normalize=normalize, reg=0.05, tol=1e-5), c)
    named = yaml.safe_load(str(seen[0].message).split("use aligner: ")[1])  # the spec the warning names
    assert named["name"] == "sinkhorn"
    sinkhorn = SinkhornAligner(SinkhornParams(**named.get("params", {})), c)
    assert sinkhorn.p.cost == "cosine" and sinkhorn.p.window is None and sinkhorn.p.normalize == normalize
    outs = []
    for al in (alias, sinkhorn):
        xs = {m: x.clone().requires_grad_() for m, x in seqs.items()}
        out = al(xs, valid)
        sum((y * torch.linspace(-1, 1, y.shape[-1], dtype=dtype)).sum() for y in out.seqs.values()).backward()
        outs.append((al.alignment_plans(), out.seqs, {m: x.grad for m, x in xs.items()}))
    for got, want in zip(outs[0], outs[1]):
        assert got.keys() == want.keys()
        for m in got:
            torch.testing.assert_close(got[m], want[m], rtol=0, atol=1e-6)


def test_entropic_alias_outputs_differ_from_sinkhorns_default_by_the_row_mass():
    """Why the warning names normalize: paper: sinkhorn's default (barycentric) output is the alias's times T_a."""
    g = torch.Generator().manual_seed(5)
    xa, xm = (torch.randn(2, T, 8, generator=g, dtype=torch.float64) for T in (6, 9))
    valid = {"text": prefix_valid([6, 4], 6), "audio": prefix_valid([9, 5], 9)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecatedOptionWarning)
        alias = aligner(plan="entropic")({"text": xa, "audio": xm}, valid).seqs["audio"]
    default = SinkhornAligner(SinkhornParams(), ctx(d=8, modalities=("text", "audio")))
    plain = default({"text": xa, "audio": xm}, valid).seqs["audio"]
    T_a = valid["text"].sum(1).to(xa.dtype).view(-1, 1, 1)
    torch.testing.assert_close(alias * T_a, plain, rtol=0, atol=1e-12)
    assert (alias - plain).abs().amax() > 0.1


def test_relaxed_plan_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RelaxedOTAligner(RelaxedOTParams(), ctx())
