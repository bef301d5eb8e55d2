"""Sinkhorn robustness: float32 row marginals at any cost scale, unbalanced masses, one thread for small solves."""

import math
import warnings

import pytest
import torch

from mmcore_plugin_ot.sinkhorn import ConvergenceWarning, sinkhorn_plan


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e2, 1e4, 1e6])
@pytest.mark.parametrize("reg", [0.05, 1.0])
def test_row_marginal_is_exact_in_float32_whatever_the_cost_scale(scale, reg):
    """Measured before the fix: row error 2e-4 at scale 1e4 (reg 0.05) and 5e-2 at 1e6."""
    g = torch.Generator().manual_seed(0)
    B, n, m = 3, 12, 15
    a, b = torch.full((B, n), 1 / n), torch.full((B, m), 1 / m)
    C = torch.rand(B, n, m, generator=g) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the columns may need more iterations at 1e6 / 0.05
        P = sinkhorn_plan(a, b, C, reg, max_iter=300, tol=1e-6).plan
    assert P.dtype == torch.float32 and torch.isfinite(P).all()
    assert (P.sum(2) - a).abs().max() < 1e-6


def test_unbalanced_marginals_are_refused_naming_the_sums():
    a = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    b = torch.tensor([[0.5, 0.5], [0.3, 0.3]])
    with pytest.raises(ValueError, match=r"pair 1 has sum\(a\) = 1 and sum\(b\) = 0\.6"):
        sinkhorn_plan(a, b, torch.rand(2, 2, 2), 0.1)


def test_float32_rounding_of_equal_masses_is_not_refused():
    n, m = 997, 13  # 1/n does not sum to 1 exactly in float32
    P = sinkhorn_plan(torch.full((n,), 1 / n), torch.full((m,), 1 / m), torch.rand(n, m), 0.5).plan
    assert torch.isfinite(P).all()


@pytest.mark.parametrize("masked", [False, True])
def test_float32_span_is_the_largest_finite_cost_over_reg(masked):
    """The span picks float64 iterations for float32 inputs; +inf (a mask) must not count, NaN-free."""
    from mmcore_plugin_ot.sinkhorn import _check

    g = torch.Generator().manual_seed(1)
    B, n, m = 2, 6, 9
    C = (torch.rand(B, n, m, generator=g) - 0.3) * 5e3  # negative entries too: |C| counts
    if masked:
        C[:, 0, :4] = math.inf
    a, b = torch.full((B, n), 1 / n), torch.full((B, m), 1 / m)
    full, span = _check(a, b, C, 0.5, 10, 10, "t")
    assert full is not masked
    assert span == pytest.approx(float(C[torch.isfinite(C)].abs().max()) / 0.5, rel=1e-6)


def test_float32_row_marginal_is_exact_with_large_costs_and_a_mask():
    g = torch.Generator().manual_seed(0)
    B, n, m = 3, 12, 15
    a, b = torch.full((B, n), 1 / n), torch.full((B, m), 1 / m)
    C = torch.rand(B, n, m, generator=g) * 1e4
    i, j = torch.arange(n)[:, None], torch.arange(m)[None]
    C = C.masked_fill((i * m / n - j).abs() > 4, math.inf)  # a band: every row and column keeps cells
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        P = sinkhorn_plan(a, b, C, 0.05, max_iter=300, tol=1e-6).plan
    assert P.dtype == torch.float32 and torch.isfinite(P).all() and (P[C == math.inf] == 0).all()
    assert (P.sum(2) - a).abs().max() < 1e-6


@pytest.mark.parametrize("serial_below, inside", [(None, 1), (0, 2)])
def test_small_cpu_solves_run_on_one_thread_and_restore_torch_threads(monkeypatch, serial_below, inside):
    """Below SERIAL_BELOW entries the solve runs on one torch thread (a busy machine made every parallel
    op wait for a descheduled thread); the caller's thread count comes back, also after an error."""
    import mmcore_plugin_ot.sinkhorn as sk

    if serial_below is not None:
        monkeypatch.setattr(sk, "SERIAL_BELOW", serial_below)
    seen = []
    solve = sk._solve

    def spy(*args):
        seen.append(torch.get_num_threads())
        return solve(*args)

    monkeypatch.setattr(sk, "_solve", spy)
    before = torch.get_num_threads()
    a, b, C = torch.full((2, 3), 1 / 3), torch.full((2, 4), 1 / 4), torch.rand(2, 3, 4)
    try:
        torch.set_num_threads(2)
        ref = sinkhorn_plan(a, b, C, 0.5).plan
        cost = sk.sinkhorn_cost(a, b, C, 0.5)
        assert seen == [inside, inside] and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="reg must be > 0"):
            sinkhorn_plan(a, b, C, -1.0)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        torch.testing.assert_close(sinkhorn_plan(a, b, C, 0.5).plan, ref, atol=1e-7, rtol=0)
        torch.testing.assert_close(sk.sinkhorn_cost(a, b, C, 0.5), cost, atol=1e-7, rtol=0)
    finally:
        torch.set_num_threads(before)
