"""order_ot: path marginals (brute force), limits in the order strength, gradients, padding, batching."""

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _ot_helpers import ctx, prefix_valid
from hypothesis import given
from hypothesis import strategies as st

from mmcore.testing import check_junk_padding
from mmcore.testing.strategies import padded_batches
from mmcore_plugin_ot.monotone import monotone_marginals
from mmcore_plugin_ot.order_ot import OrderOTAligner
from mmcore_plugin_ot.params import OrderOTParams, RelaxedOTParams
from mmcore_plugin_ot.relaxed_ot import RelaxedOTAligner

EXACT = 1e-12  # float64 sums of <= 4^5 path weights against the lattice recursion: rounding only
MARGINAL_ATOL = 1e-6  # float32 columns of the plan: a softmax per frame, rounding only
LIMIT_ATOL = 1e-9  # float64, e^-60 and smaller terms dropped by the limit


def aligner(d=4, **params) -> OrderOTAligner:
    return OrderOTAligner(OrderOTParams(**params), ctx(d=d, modalities=("text", "audio")))


def plan_of(al, xa, xm, va, vm):
    al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    return al.alignment_plans()["audio"]


def problem(seed=0, B=3, T_a=4, T_m=5, d=4, la=(4, 3, 1), lm=(5, 2, 4), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xa = torch.randn(B, T_a, d, generator=g, dtype=dtype)
    xm = torch.randn(B, T_m, d, generator=g, dtype=dtype)
    return xa, xm, prefix_valid(list(la)[:B], T_a), prefix_valid(list(lm)[:B], T_m)


def penalty(i, k):
    return k - i - 1 if k > i + 1 else (i - k if k < i else 0)


def brute_force(S, lam, monotone_only=False):
    """Marginals by enumerating every assignment of the m frames to the n tokens: (n, m) float64."""
    n, m = S.shape
    out = torch.zeros(n, m, dtype=torch.float64)
    paths, scores = [], []
    for z in itertools.product(range(n), repeat=m):
        pen = z[0] + (n - 1 - z[-1]) + sum(penalty(z[j], z[j + 1]) for j in range(m - 1))
        if monotone_only and pen > 0:
            continue
        paths.append(z)
        scores.append(float(sum(S[z[j], j] for j in range(m))) - lam * pen)
    w = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)
    for z, p in zip(paths, w):
        for j, i in enumerate(z):
            out[i, j] += p
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0, 8.0])
def test_marginals_equal_brute_force_enumeration(lam):
    g = torch.Generator().manual_seed(1)
    S = 2 * torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    la, lm = [4, 3, 1], [5, 2, 4]
    va, vm = prefix_valid(la, 4), prefix_valid(lm, 5)
    gamma = monotone_marginals(S, va, vm, lam).gamma
    for b in range(3):
        ref = brute_force(S[b, : la[b], : lm[b]], lam)
        torch.testing.assert_close(gamma[b, : la[b], : lm[b]], ref, rtol=0, atol=EXACT)
        assert gamma[b, la[b]:].abs().sum() == 0 and gamma[b, :, lm[b]:].abs().sum() == 0


def test_large_order_enumerates_only_left_to_right_paths():
    """λ -> ∞: the marginals of the paths that start at token 0, end at the last and step by 0 or 1."""
    g = torch.Generator().manual_seed(2)
    S = torch.randn(1, 3, 6, generator=g, dtype=torch.float64)
    gamma = monotone_marginals(S, prefix_valid([3], 3), prefix_valid([6], 6), 80.0).gamma[0]
    torch.testing.assert_close(gamma, brute_force(S[0], 0.0, monotone_only=True), rtol=0, atol=LIMIT_ATOL)


def test_order_zero_is_the_entropic_relaxed_ot_plan():
    xa, xm, va, vm = problem(seed=3)
    P = plan_of(aligner(order=0.0, reg=0.2).double(), xa, xm, va, vm)
    C = 1 - torch.nn.functional.normalize(xa, dim=-1) @ torch.nn.functional.normalize(xm, dim=-1).transpose(1, 2)
    ref = torch.softmax((-C / 0.2).masked_fill(~va.unsqueeze(2), -math.inf), 1) / vm.sum(1).view(-1, 1, 1)
    keep = va.unsqueeze(2) & vm.unsqueeze(1)
    torch.testing.assert_close(P, torch.where(keep, ref, torch.zeros_like(ref)), rtol=0, atol=EXACT)


def test_order_zero_and_small_reg_is_relaxed_ots_argmin_plan():
    xa, xm, va, vm = problem(seed=4)
    P = plan_of(aligner(order=0.0, reg=1e-4).double(), xa, xm, va, vm)
    relaxed = RelaxedOTAligner(RelaxedOTParams(), ctx(d=4, modalities=("text", "audio"))).double()
    torch.testing.assert_close(P, plan_of(relaxed, xa, xm, va, vm), rtol=0, atol=LIMIT_ATOL)


def test_large_order_without_content_on_equal_lengths_is_the_diagonal():
    xa, xm, va, vm = problem(seed=5, T_a=6, T_m=6, la=(6, 4, 2), lm=(6, 4, 2))
    xa, xm = torch.zeros_like(xa), torch.zeros_like(xm)  # no content: cosine cost 1 everywhere
    P = plan_of(aligner(order=60.0).double(), xa, xm, va, vm)
    for b, n in enumerate((6, 4, 2)):
        torch.testing.assert_close(P[b, :n, :n], torch.eye(n, dtype=torch.float64) / n, rtol=0, atol=LIMIT_ATOL)


@pytest.mark.parametrize("n,m", [(5, 13), (4, 9), (7, 30)])
def test_large_order_without_content_is_symmetric_about_the_proportional_diagonal(n, m):
    """The uniform mixture of left-to-right paths: P(i, j) = P(n-1-i, m-1-j); the first and last tokens
    peak at the first and last frame (which they must own), the others within 1 of the proportional frame."""
    xa, xm, va, vm = problem(seed=6, B=1, T_a=n, T_m=m, la=(n,), lm=(m,))
    xa, xm = torch.zeros_like(xa), torch.zeros_like(xm)  # no content: cosine cost 1 everywhere
    P = plan_of(aligner(order=60.0).double(), xa, xm, va, vm)[0]
    torch.testing.assert_close(P, P.flip(0).flip(1), rtol=0, atol=1e-9)
    centre = torch.floor((torch.arange(n) + 0.5) * m / n).long()
    top = P.argmax(1)
    assert top[0] == 0 and top[-1] == m - 1
    assert ((top[1:-1] - centre[1:-1]).abs() <= 1).all(), (top, centre)


@given(batch=padded_batches(min_batch=1, max_batch=3, max_len=9, dim=4, bound=3.0),
       other=padded_batches(min_batch=3, max_batch=3, max_len=11, dim=4, bound=3.0),
       order=st.floats(0.0, 30.0), reg=st.sampled_from([0.01, 0.1, 1.0]))
def test_plan_columns_carry_each_frames_mass_and_padding_none(batch, other, order, reg):
    xa, va = (torch.from_numpy(a) for a in batch)
    B = xa.shape[0]
    xm, vm = (torch.from_numpy(a)[:B] for a in other)
    P = plan_of(aligner(order=order, reg=reg), xa.float(), xm.float(), va, vm)
    assert (P >= 0).all() and torch.isfinite(P).all()
    col = vm.float() / vm.sum(1, keepdim=True).clamp_min(1)  # (B, T_m): 1/T_m on valid frames
    torch.testing.assert_close(P.sum(1), col, rtol=0, atol=MARGINAL_ATOL)
    keep = va.unsqueeze(2) & vm.unsqueeze(1)
    assert P[~keep].abs().sum() == 0


def test_batch_equals_one_pair_at_a_time():
    xa, xm, va, vm = problem(seed=7, B=3, T_a=7, T_m=12, la=(7, 3, 5), lm=(12, 9, 4))
    al = aligner(order=5.0, reg=0.1).double()
    P = plan_of(al, xa, xm, va, vm)
    for b, (n, m) in enumerate(((7, 12), (3, 9), (5, 4))):
        one = plan_of(al, xa[b:b + 1, :n], xm[b:b + 1, :m], va[b:b + 1, :n], vm[b:b + 1, :m])
        torch.testing.assert_close(P[b, :n, :m], one[0], rtol=0, atol=EXACT)


@pytest.mark.parametrize("lam", [0.0, 1.5, 12.0])
def test_kernel_gradients_match_finite_differences(lam):
    g = torch.Generator().manual_seed(8)
    S = torch.randn(2, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    order = torch.tensor(lam, dtype=torch.float64, requires_grad=True)
    va, vm = prefix_valid([4, 2], 4), prefix_valid([6, 3], 6)
    assert torch.autograd.gradcheck(lambda s, o: monotone_marginals(s, va, vm, o).gamma, (S, order))


def test_aligner_gradients_match_finite_differences_with_a_learned_order():
    xa, xm, va, vm = problem(seed=9, B=2, T_a=3, T_m=5, d=3, la=(3, 2), lm=(5, 3))
    al = aligner(d=3, order=2.0, reg=0.5, learn_order=True).double()

    def run(a, m, log_order):
        out = torch.func.functional_call(al, {"log_order": log_order}, ({"text": a, "audio": m},
                                                                         {"text": va, "audio": vm}))
        return out.seqs["audio"]

    inputs = (xa.requires_grad_(), xm.requires_grad_(), al.log_order.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(run, inputs)


def test_learned_order_receives_a_finite_nonzero_gradient():
    xa, xm, va, vm = problem(seed=10, dtype=torch.float32)
    al = aligner(order=3.0, learn_order=True)
    out = al({"text": xa, "audio": xm}, {"text": va, "audio": vm}).seqs["audio"]
    out.square().sum().backward()
    assert torch.isfinite(al.log_order.grad) and al.log_order.grad != 0


@pytest.mark.parametrize("cost", ["cosine", "sqeuclidean"])
def test_small_reg_in_float32_stays_finite(cost):
    xa, xm, va, vm = problem(seed=11, B=3, T_a=9, T_m=40, la=(9, 4, 1), lm=(40, 17, 3), dtype=torch.float32)
    xa, xm = (10 * xa).requires_grad_(), (10 * xm).requires_grad_()
    al = aligner(cost=cost, reg=1e-3, order=10.0)
    out = al({"text": xa, "audio": xm}, {"text": va, "audio": vm}).seqs["audio"]
    out.sum().backward()
    P = al.alignment_plans()["audio"]
    assert torch.isfinite(P).all() and torch.isfinite(xa.grad).all() and torch.isfinite(xm.grad).all()
    torch.testing.assert_close(P.sum(1), vm.float() / vm.sum(1, keepdim=True), rtol=0, atol=1e-5)


CONFIGS = [{}, {"cost": "sqeuclidean"}, {"order": 0.0}, {"learn_order": True}, {"normalize": "paper"}]


@pytest.mark.parametrize("junk", [float("nan"), float("inf"), 1e6])
@pytest.mark.parametrize("params", CONFIGS, ids=["default", "sqeuclidean", "order0", "learned", "paper"])
@pytest.mark.parametrize("lengths", [{"text": 7, "audio": 5, "vision": 6}, {"text": 3, "audio": 9, "vision": 1}])
def test_padding_junk_never_reaches_a_gradient(params, junk, lengths):
    check_junk_padding("aligner", "order_ot", junk, params=params, lengths=lengths, batch_size=3, seed=1)


def test_learn_order_needs_a_positive_order():
    with pytest.raises(ValueError, match="order must be > 0"):
        OrderOTParams(order=0.0, learn_order=True)


def _experiment():
    path = Path(__file__).resolve().parents[1] / "experiments" / "order_alignment.py"
    spec = importlib.util.spec_from_file_location("order_alignment", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_top1_beats_content_only_and_the_band_on_repeated_words():
    """The issue's hardest row (12-word vocabulary, noise 1.0), 96 clips: order_ot >= 0.95, above sinkhorn +/- window."""
    exp = _experiment()
    batch = exp.make_batch("vocab12", 1.0, N=96, d=8, warp=0.25, seed=3)
    ours = exp.top1(exp.aligner("order_ot", 8), batch)["top1"]
    plain = exp.top1(exp.aligner("sinkhorn", 8), batch)["top1"]
    band = exp.top1(exp.aligner("sinkhorn", 8, window=2), batch)["top1"]
    assert ours >= 0.95 and ours > max(plain, band) + 0.05, (ours, plain, band)
    assert np.isfinite(ours)
