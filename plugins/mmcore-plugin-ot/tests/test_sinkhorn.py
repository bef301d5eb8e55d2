"""Batched log-domain Sinkhorn against POT, and its invariants (POT test_bregman.py style)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmcore.testing.strategies import ot_problems
from mmcore_plugin_ot._masks import uniform_weights
from mmcore_plugin_ot.sinkhorn import ConvergenceWarning, sinkhorn_cost, sinkhorn_plan

REG = 0.1  # costs lie in [0, 1]: converges in tens of iterations, still far from the uniform plan
POT_TOL = 1e-9  # POT's default stopThr; both sides stop on the same column-marginal error
PLAN_ATOL = 1e-5  # brief/STYLE: batched plan equals POT's per pair to 1e-5 (float64)
MARGINAL_ATOL = 1e-5  # entropic marginals, as POT's test_bregman.py
EXACT_ATOL = 1e-12  # float64 rounding of a few hundred sums: "exactly zero" up to that
MAX_ITER = 20_000  # rarely binding at REG (see pytestmark)

# The thorough profile finds skewed problems (weight ratios up to 1e3) that need more than MAX_ITER
# iterations to reach 1e-9; every assertion here holds with the error left, and the warning itself
# is tested explicitly (pytest.warns / simplefilter("error") override this mark).
pytestmark = pytest.mark.filterwarnings("ignore::mmcore_plugin_ot.sinkhorn.ConvergenceWarning")


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.array(x), dtype=torch.float64)


def _pad(problems, fill: float = 7.0):
    """Stack (a, b, cost) problems of different sizes into a padded batch; garbage cost on padding."""
    N = max(p[2].shape[0] for p in problems)
    M = max(p[2].shape[1] for p in problems)
    B = len(problems)
    a, b, c = np.zeros((B, N)), np.zeros((B, M)), np.full((B, N, M), fill)
    for i, (ai, bi, ci) in enumerate(problems):
        a[i, : len(ai)], b[i, : len(bi)], c[i, : len(ai), : len(bi)] = ai, bi, ci
    return _t(a), _t(b), _t(c)


def _pot_plan(a, b, cost, reg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT's own non-convergence warning is not under test
        return ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", stopThr=POT_TOL, numItermax=MAX_ITER)


batches = st.lists(ot_problems(max_size=8), min_size=1, max_size=4)


@given(ot_problems(max_size=10))
def test_plan_is_nonnegative(problem):
    a, b, c = map(_t, problem)
    assert (sinkhorn_plan(a, b, c, REG).plan >= 0).all()


@given(ot_problems(max_size=10))
def test_plan_marginals_match(problem):
    a, b, c = map(_t, problem)
    plan = sinkhorn_plan(a, b, c, REG, tol=POT_TOL, max_iter=MAX_ITER).plan
    torch.testing.assert_close(plan.sum(1), a, atol=MARGINAL_ATOL, rtol=0)
    torch.testing.assert_close(plan.sum(0), b, atol=MARGINAL_ATOL, rtol=0)


@given(batches)
def test_batched_plan_equals_pot_per_pair(problems):
    a, b, c = _pad(problems)
    plan = sinkhorn_plan(a, b, c, REG, tol=POT_TOL, max_iter=MAX_ITER).plan
    for i, (ai, bi, ci) in enumerate(problems):
        n, m = ci.shape
        ref = _pot_plan(ai, bi, ci, REG)  # POT on the unpadded sub-problem
        np.testing.assert_allclose(plan[i, :n, :m].numpy(), ref, atol=PLAN_ATOL, rtol=0)


@given(batches)
def test_padding_receives_no_mass(problems):
    a, b, c = _pad(problems)
    plan = sinkhorn_plan(a, b, c, REG).plan
    pad = ~((a > 0).unsqueeze(2) & (b > 0).unsqueeze(1))
    assert (plan[pad] == 0).all()


def test_batched_equals_pot_on_seeded_uniform_problem():
    """test_bregman.py's setting: seeded points, uniform weights, squared Euclidean cost."""
    rng = np.random.RandomState(0)
    n = 100
    x = rng.randn(n, 2)
    a = ot.utils.unif(n)
    cost = ot.dist(x, x)
    cost /= cost.max()
    ref = _pot_plan(a, a, cost, REG)
    plan = sinkhorn_plan(_t(a)[None], _t(a)[None], _t(cost)[None], REG, tol=POT_TOL, max_iter=MAX_ITER).plan[0]
    np.testing.assert_allclose(plan.numpy(), ref, atol=PLAN_ATOL, rtol=0)


def test_iteration_count_matches_pot():
    """Same updates, same check schedule (after 1, 11, 21, ...): same stopping iteration."""
    rng = np.random.RandomState(1)
    a, b = ot.utils.unif(30), ot.utils.unif(40)
    cost = rng.rand(30, 40)
    _, log = ot.sinkhorn(a, b, cost, REG, method="sinkhorn_log", stopThr=POT_TOL, log=True)
    res = sinkhorn_plan(_t(a), _t(b), _t(cost), REG, tol=POT_TOL)
    assert res.n_iter == log["niter"] + 1  # POT reports the 0-based index of the last iteration


@given(ot_problems(max_size=6))
def test_entropic_cost_tends_to_emd2(problem):
    """0 <= <P_eps, C> - OT <= eps (log n + log m): the entropy of a coupling is in [0, log nm]."""
    a, b, c = problem
    n, m = c.shape
    exact = ot.emd2(a, b, c)
    for reg in (0.1, 0.02):
        with warnings.catch_warnings():
            # Skewed weights (ratio up to 1e3) at reg=0.02 can need > 20k iterations for 1e-9; the
            # slack below accounts for whatever marginal error is left instead.
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = sinkhorn_plan(_t(a), _t(b), _t(c), reg, tol=POT_TOL, max_iter=MAX_ITER)
        got = float((res.plan * _t(c)).sum())
        # a marginal error e moves <P, C> by at most ||e||_1 max C <= sqrt(m) ||e||_2 (C <= 1),
        # plus emd2's own precision
        slack = 1e-7 + math.sqrt(m) * float(res.err)
        assert -slack <= got - exact <= reg * math.log(n * m) + slack


def test_entropic_cost_converges_to_emd2_as_reg_shrinks():
    rng = np.random.RandomState(2)
    a, b, c = ot.utils.unif(6), ot.utils.unif(5), rng.rand(6, 5)
    exact = ot.emd2(a, b, c)
    costs = [float(sinkhorn_cost(_t(a), _t(b), _t(c), reg, tol=POT_TOL, max_iter=MAX_ITER)) for reg in (0.1, 0.01, 0.002)]
    gaps = [cost - exact for cost in costs]
    assert gaps[0] >= gaps[1] >= gaps[2] >= -1e-9
    assert gaps[2] < 2e-3  # reg * log(30) = 6.8e-3 is the bound; the gap is usually far below it


@given(ot_problems(max_size=10, symmetric=True))
def test_plan_symmetric_when_cost_symmetric_and_a_equals_b(problem):
    a, b, c = map(_t, problem)
    plan = sinkhorn_plan(a, b, c, REG, tol=POT_TOL, max_iter=MAX_ITER).plan
    torch.testing.assert_close(plan, plan.T, atol=PLAN_ATOL, rtol=0)


@given(ot_problems(max_size=10))
def test_cost_unchanged_by_swapping_marginals_and_transposing(problem):
    a, b, c = map(_t, problem)
    fwd = sinkhorn_cost(a, b, c, REG, tol=POT_TOL, max_iter=MAX_ITER)
    bwd = sinkhorn_cost(b, a, c.T, REG, tol=POT_TOL, max_iter=MAX_ITER)
    torch.testing.assert_close(fwd, bwd, atol=PLAN_ATOL, rtol=0)


@given(ot_problems(max_size=10), st.floats(-5.0, 5.0))
def test_plan_invariant_to_adding_a_constant_to_the_cost(problem, shift):
    a, b, c = map(_t, problem)
    ref = sinkhorn_plan(a, b, c, REG, tol=POT_TOL, max_iter=MAX_ITER).plan
    got = sinkhorn_plan(a, b, c + shift, REG, tol=POT_TOL, max_iter=MAX_ITER).plan
    torch.testing.assert_close(got, ref, atol=PLAN_ATOL, rtol=0)


@given(ot_problems(max_size=10), st.floats(0.1, 10.0))
def test_plan_invariant_to_scaling_cost_and_reg_together(problem, scale):
    a, b, c = map(_t, problem)
    ref = sinkhorn_plan(a, b, c, REG, tol=POT_TOL, max_iter=MAX_ITER).plan
    got = sinkhorn_plan(a, b, c * scale, REG * scale, tol=POT_TOL, max_iter=MAX_ITER).plan
    torch.testing.assert_close(got, ref, atol=PLAN_ATOL, rtol=0)


def _window_problem(T: int = 12, W: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    i = torch.arange(T)
    inside = (i[:, None] - i[None, :]).abs() <= W  # MM-Align's window |i - j| <= W
    cost = torch.where(inside, torch.rand(T, T, generator=gen, dtype=torch.float64), math.inf)
    return torch.full((T,), 1.0 / T, dtype=torch.float64), cost, inside


def test_window_inf_cost_gives_exact_zeros_outside_window():
    a, cost, inside = _window_problem()
    plan = sinkhorn_plan(a, a, cost, 0.05, tol=POT_TOL, max_iter=MAX_ITER).plan
    assert (plan[~inside] == 0).all()
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(0), a, atol=MARGINAL_ATOL, rtol=0)


def test_window_inf_cost_equals_pot():
    a, cost, _ = _window_problem()
    plan = sinkhorn_plan(a, a, cost, 0.05, tol=POT_TOL, max_iter=MAX_ITER).plan
    ref = _pot_plan(a.numpy(), a.numpy(), cost.numpy(), 0.05)
    np.testing.assert_allclose(plan.numpy(), ref, atol=PLAN_ATOL, rtol=0)


def test_window_gradients_are_finite_and_zero_outside_window():
    a, cost, inside = _window_problem()
    cost.requires_grad_(True)
    sinkhorn_cost(a, a, cost, 0.05, tol=POT_TOL, max_iter=MAX_ITER).backward()
    assert torch.isfinite(cost.grad).all()
    assert (cost.grad[~inside] == 0).all()


def test_length_one_and_fully_padded_rows_are_finite():
    valid_a = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    valid_b = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    a, b = uniform_weights(valid_a, torch.float64), uniform_weights(valid_b, torch.float64)
    cost = torch.rand(3, 3, 4, dtype=torch.float64, requires_grad=True)
    res = sinkhorn_plan(a, b, cost, REG)
    (res.plan * torch.rand(3, 3, 4, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(res.plan).all() and torch.isfinite(cost.grad).all()
    assert res.plan[0, 0, 0].item() == pytest.approx(1.0)  # 1 x 1 problem: all mass on the one cell
    torch.testing.assert_close(res.plan[1, :, 0], torch.full((3,), 1 / 3, dtype=torch.float64))
    assert (res.plan[2] == 0).all() and float(res.err[2]) == 0.0
    assert torch.isneginf(res.log_u[2]).all() and torch.isneginf(res.log_v[0, 1:]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reg", [1e-3, 1e-2])
@pytest.mark.parametrize("high", [1.0, 2.0])
def test_no_nan_or_inf_for_small_reg_low_precision(dtype, reg, high):
    gen = torch.Generator().manual_seed(0)
    valid = torch.arange(16)[None, :] < torch.tensor([16, 9, 1, 0])[:, None]  # (4, 16)
    a = uniform_weights(valid, dtype)
    b = uniform_weights(valid[:, :12], dtype)
    cost = (torch.rand(4, 16, 12, generator=gen) * high).to(dtype).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 200 iterations need not converge at 1e-3
        res = sinkhorn_plan(a, b, cost, reg, max_iter=200)
    res.plan.float().sum().backward()
    assert res.plan.dtype == dtype and res.log_u.dtype == torch.float32
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.log_v[valid[:, :12]]).all()
    assert torch.isfinite(cost.grad).all()


def test_bfloat16_plan_close_to_float64_plan():
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(2, 8, 8, generator=gen, dtype=torch.float64)
    a = torch.full((2, 8), 1 / 8, dtype=torch.float64)
    ref = sinkhorn_plan(a, a, cost, REG, tol=POT_TOL).plan
    got = sinkhorn_plan(a.bfloat16(), a.bfloat16(), cost.bfloat16(), REG).plan
    # bf16 keeps 8 bits: inputs are rounded by 2^-9 relative, plan entries ~1/8 by the same again
    torch.testing.assert_close(got.double(), ref, atol=2e-3, rtol=2e-2)


def test_warns_convergence_at_max_iter_1():
    a, cost, _ = _window_problem()
    with pytest.warns(ConvergenceWarning, match="raise max_iter or reg"):
        sinkhorn_plan(a, a, cost, 1e-3, max_iter=1)


def test_converged_problem_does_not_warn():
    a, cost, _ = _window_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        sinkhorn_plan(a, a, torch.where(torch.isfinite(cost), cost, 0.5), REG)


def test_small_reg_float64_matches_pot():
    """reg = 1e-3 on costs in [0, 1]: exp(-C/reg) underflows, so only log-domain updates work."""
    rng = np.random.RandomState(3)
    a, b, c = ot.utils.unif(7), ot.utils.unif(9), rng.rand(7, 9)
    ref = _pot_plan(a, b, c, 1e-3)
    plan = sinkhorn_plan(_t(a), _t(b), _t(c), 1e-3, tol=POT_TOL, max_iter=MAX_ITER).plan
    np.testing.assert_allclose(plan.numpy(), ref, atol=PLAN_ATOL, rtol=0)


def test_gradcheck_through_unrolled_iterations():
    gen = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(2, 3, generator=gen, dtype=torch.float64), -1).requires_grad_(True)
    b = torch.full((2, 4), 0.25, dtype=torch.float64)
    cost = torch.rand(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: always exactly max_iter updates
        assert torch.autograd.gradcheck(
            lambda a_, c_: sinkhorn_plan(a_, b, c_, 0.5, tol=0.0, max_iter=30).plan, (a, cost)
        )


def test_gradcheck_with_padding_and_inf_cost():
    gen = torch.Generator().manual_seed(1)
    a = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    b = torch.tensor([[0.25, 0.75, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    cost = torch.rand(2, 3, 4, generator=gen, dtype=torch.float64)
    cost[1, 0, 3] = cost[1, 2, 0] = math.inf
    cost.requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert torch.autograd.gradcheck(lambda c_: sinkhorn_plan(a, b, c_, 0.5, tol=0.0, max_iter=30).plan, (cost,))


def test_detach_gives_same_plan_and_a_cost_gradient():
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(3, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    a, b = torch.full((3, 5), 0.2, dtype=torch.float64), torch.full((3, 6), 1 / 6, dtype=torch.float64)
    full = sinkhorn_plan(a, b, cost, REG, tol=POT_TOL)
    cheap = sinkhorn_plan(a, b, cost, REG, tol=POT_TOL, detach=True)
    torch.testing.assert_close(cheap.plan, full.plan, atol=1e-12, rtol=0)
    (cheap.plan * cost).sum().backward()
    assert torch.isfinite(cost.grad).all() and cost.grad.abs().sum() > 0


def test_unbatched_equals_batched():
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(5, 6, generator=gen, dtype=torch.float64)
    a, b = torch.full((5,), 0.2, dtype=torch.float64), torch.full((6,), 1 / 6, dtype=torch.float64)
    one = sinkhorn_plan(a, b, cost, REG)
    many = sinkhorn_plan(a[None], b[None], cost[None], REG)
    assert one.plan.shape == (5, 6) and one.err.shape == ()
    torch.testing.assert_close(one.plan, many.plan[0], atol=EXACT_ATOL, rtol=0)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda a, b, c: (-a, b, c), "must be >= 0"),
        (lambda a, b, c: (a, b, c.masked_fill(c > 0.5, float("nan"))), "NaN or -inf"),
        (lambda a, b, c: (a, b, c.masked_fill(c > 0.5, -math.inf)), "NaN or -inf"),
        (lambda a, b, c: (a[:, :-1], b, c), r"need cost \(B, n, m\)"),
    ],
)
def test_rejects_bad_inputs_with_a_named_error(mutate, match):
    a, b, c = torch.full((2, 4), 0.25), torch.full((2, 3), 1 / 3), torch.rand(2, 4, 3)
    with pytest.raises(ValueError, match=match):
        sinkhorn_plan(*mutate(a, b, c), REG)


def test_autocast_does_not_lower_the_iteration_precision():
    """Under bf16 autocast the iterations still run in float32: marginals match to float32 accuracy."""
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(2, 6, 9, generator=g)
    a, b = torch.full((2, 6), 1 / 6), torch.full((2, 9), 1 / 9)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        plan = sinkhorn_plan(a, b, cost, 0.1, tol=1e-6).plan
    assert plan.dtype == torch.float32
    torch.testing.assert_close(plan.sum(-1), a, atol=1e-5, rtol=0)
