"""Bures–Wasserstein distances against POT, their invariants and their gradients."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mmcore.testing.strategies import spd_matrices
from mmcore_plugin_ot.gaussian import bures_wasserstein_squared, bures_wasserstein_squared_diag, spd_sqrt

POT_RTOL = 1e-8  # both sides eigen-decompose in float64; POT takes sqrtm of a product, we of an SPD matrix
SELF_ATOL = 1e-9  # tr Σ + tr Σ - 2 tr Σ: rounding of sums of eigenvalues up to 10 in d <= 6

D = st.integers(1, 6)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.array(x), dtype=torch.float64)


def _means(d: int):
    return hnp.arrays(np.float64, d, elements=st.floats(-5, 5, allow_nan=False, allow_subnormal=False))


@st.composite
def gaussians(draw, diagonal: bool = False):
    d = draw(D)
    cov = spd_matrices(d, diagonal=diagonal)
    return draw(_means(d)), draw(cov), draw(_means(d)), draw(cov)


@given(gaussians())
def test_bw_matches_pot(g):
    m1, c1, m2, c2 = g
    ref = ot.gaussian.bures_wasserstein_distance(m1, m2, c1, c2) ** 2  # POT returns W₂
    got = float(bures_wasserstein_squared(_t(m1), _t(c1), _t(m2), _t(c2)))
    assert got == pytest.approx(ref, rel=POT_RTOL, abs=SELF_ATOL)


@given(gaussians(diagonal=True))
def test_diag_bw_matches_pot_and_full(g):
    m1, c1, m2, c2 = g
    ref = ot.gaussian.bures_wasserstein_distance(m1, m2, c1, c2) ** 2
    diag = float(bures_wasserstein_squared_diag(_t(m1), _t(np.diag(c1)), _t(m2), _t(np.diag(c2))))
    full = float(bures_wasserstein_squared(_t(m1), _t(c1), _t(m2), _t(c2)))
    assert diag == pytest.approx(ref, rel=POT_RTOL, abs=SELF_ATOL)
    assert diag == pytest.approx(full, rel=POT_RTOL, abs=SELF_ATOL)


@given(D.flatmap(lambda d: st.tuples(_means(d), spd_matrices(d))))
def test_bw_self_is_zero(g):
    m, c = map(_t, g)
    assert abs(float(bures_wasserstein_squared(m, c, m, c))) <= SELF_ATOL
    assert float(bures_wasserstein_squared_diag(m, torch.diagonal(c), m, torch.diagonal(c))) == 0.0


@given(gaussians())
def test_bw_is_symmetric(g):
    m1, c1, m2, c2 = map(_t, g)
    fwd, bwd = bures_wasserstein_squared(m1, c1, m2, c2), bures_wasserstein_squared(m2, c2, m1, c1)
    assert float(fwd) == pytest.approx(float(bwd), rel=POT_RTOL, abs=SELF_ATOL)


@given(gaussians())
def test_bw_is_nonnegative(g):
    assert float(bures_wasserstein_squared(*map(_t, g))) >= 0.0


@given(D.flatmap(spd_matrices))
def test_spd_sqrt_squares_back(c):
    c = _t(c)
    s = spd_sqrt(c)
    torch.testing.assert_close(s @ s, c, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(s, s.T, atol=0, rtol=0)


def test_spd_sqrt_gradcheck():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a_: spd_sqrt(a_ @ a_.mT + 0.5 * torch.eye(4, dtype=torch.float64)), (a,))


def test_bw_gradcheck():
    gen = torch.Generator().manual_seed(1)
    m1, m2 = (torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    a1, a2 = (torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    eye = 0.3 * torch.eye(3, dtype=torch.float64)
    def bw(m1_, a1_, m2_, a2_):
        return bures_wasserstein_squared(m1_, a1_ @ a1_.T + eye, m2_, a2_ @ a2_.T + eye)

    assert torch.autograd.gradcheck(bw, (m1, a1, m2, a2))


def test_gradient_is_finite_and_exact_at_repeated_eigenvalues():
    """Σ₁ = I, Σ₂ = 2I: W₂² = d (1 - √2)², dW₂²/dΣ₁ = (1 - √2) I (eigh's own backward gives NaN here)."""
    d = 4
    c1 = torch.eye(d, dtype=torch.float64, requires_grad=True)
    mean = torch.zeros(d, dtype=torch.float64)
    out = bures_wasserstein_squared(mean, c1, mean, 2 * torch.eye(d, dtype=torch.float64))
    out.backward()
    assert out.item() == pytest.approx(d * (1 - 2**0.5) ** 2, rel=1e-12)
    torch.testing.assert_close(c1.grad, (1 - 2**0.5) * torch.eye(d, dtype=torch.float64))


def test_gradient_is_finite_when_gaussians_coincide():
    c = torch.eye(3, dtype=torch.float64, requires_grad=True)
    m = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    bures_wasserstein_squared(m, c, m, c.detach()).backward()
    assert torch.isfinite(c.grad).all() and torch.isfinite(m.grad).all()


def test_pairwise_cost_by_broadcasting_matches_a_loop():
    gen = torch.Generator().manual_seed(2)
    mu1, mu2 = (torch.randn(k, 3, generator=gen, dtype=torch.float64) for k in (4, 5))
    a1, a2 = (torch.randn(k, 3, 3, generator=gen, dtype=torch.float64) for k in (4, 5))
    c1, c2 = a1 @ a1.mT + 0.1 * torch.eye(3), a2 @ a2.mT + 0.1 * torch.eye(3)
    cost = bures_wasserstein_squared(mu1[:, None], c1[:, None], mu2[None], c2[None])  # (4, 5)
    loop = torch.zeros(4, 5, dtype=torch.float64)
    for i in range(4):
        for j in range(5):
            loop[i, j] = bures_wasserstein_squared(mu1[i], c1[i], mu2[j], c2[j])
    assert cost.shape == (4, 5)
    torch.testing.assert_close(cost, loop, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_inputs_keep_their_dtype(dtype):
    m = torch.randn(2, 3).to(dtype)
    c = (torch.eye(3) * 2).expand(2, 3, 3).to(dtype)
    assert bures_wasserstein_squared(m, c, m.flip(0), c).dtype == dtype
    ones = torch.ones(2, 3, dtype=dtype)
    assert bures_wasserstein_squared_diag(m, ones, m, ones).dtype == dtype


def test_rejects_covariance_of_wrong_size():
    with pytest.raises(ValueError, match=r"need \(\.\.\., 3, 3\)"):
        bures_wasserstein_squared(torch.zeros(3), torch.eye(4), torch.zeros(3), torch.eye(3))
