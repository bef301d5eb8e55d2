"""Gaussian-kernel MMD²: a plain NumPy reference, its invariants, padding and the estimators' bias."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmcore.testing.strategies import padded_batches
from mmcore_plugin_ot.mmd import median_sigma, mmd2, mmd2_pooled

SIGMA = 2.0  # features in [-3, 3] and d <= 8: distances of a few units, kernels well inside (0, 1)
REF_ATOL = 1e-9  # float64, sums of at most a few hundred kernel values
ROUND_ATOL = 1e-6  # float32 rounding of kernel sums ~1: the V-statistic may dip this far below 0

batches = padded_batches(max_batch=3, max_len=9, max_dim=5, bound=3.0)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.array(x))


def _ref(x: np.ndarray, y: np.ndarray, sigmas, unbiased: bool) -> float:
    """MMD² straight from the definition: double loops over tokens."""
    def k(p, q):
        return sum(np.exp(-np.sum((p - q) ** 2) / (2 * s**2)) for s in sigmas)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if not (unbiased and i == j))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
    if unbiased:
        return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)
    return kxx / n**2 + kyy / m**2 - 2 * kxy / (n * m)


@given(batches, batches, st.booleans())
def test_matches_definition_on_each_pair(bx, by, unbiased):
    (x, vx), (y, vy) = bx, by
    B = min(len(x), len(y))
    d = min(x.shape[2], y.shape[2])
    x, vx, y, vy = x[:B, :, :d], vx[:B], y[:B, :, :d], vy[:B]
    got = mmd2(_t(x), _t(y), x_valid=_t(vx), y_valid=_t(vy), sigma=[SIGMA, 2 * SIGMA], unbiased=unbiased)
    for i in range(B):
        xi, yi = x[i][vx[i]], y[i][vy[i]]
        if unbiased and (len(xi) < 2 or len(yi) < 2):
            assert float(got[i]) == 0.0  # documented: undefined U-statistic -> 0
            continue
        assert float(got[i]) == pytest.approx(_ref(xi, yi, [SIGMA, 2 * SIGMA], unbiased), abs=REF_ATOL)


@given(batches)
def test_mmd_self_is_zero(batch):
    x, valid = map(_t, batch)
    got = mmd2(x, x, x_valid=valid, y_valid=valid, sigma=SIGMA)
    assert (got.abs() <= REF_ATOL).all()


@given(batches, batches)
def test_biased_mmd_is_nonnegative(bx, by):
    (x, vx), (y, vy) = bx, by
    B, d = min(len(x), len(y)), min(x.shape[2], y.shape[2])
    got = mmd2(_t(x[:B, :, :d]).float(), _t(y[:B, :, :d]).float(), x_valid=_t(vx[:B]), y_valid=_t(vy[:B]), sigma=SIGMA)
    assert (got >= -ROUND_ATOL).all()


@given(batches, batches, st.booleans())
def test_mmd_is_symmetric(bx, by, unbiased):
    (x, vx), (y, vy) = bx, by
    B, d = min(len(x), len(y)), min(x.shape[2], y.shape[2])
    x, y, vx, vy = _t(x[:B, :, :d]), _t(y[:B, :, :d]), _t(vx[:B]), _t(vy[:B])
    xy = mmd2(x, y, x_valid=vx, y_valid=vy, sigma="median", unbiased=unbiased)
    yx = mmd2(y, x, x_valid=vy, y_valid=vx, sigma="median", unbiased=unbiased)
    torch.testing.assert_close(xy, yx, atol=REF_ATOL, rtol=0)


@given(batches, st.floats(-100.0, 100.0))
def test_padded_values_do_not_change_mmd(batch, garbage):
    x, valid = map(_t, batch)
    y = x.flip(0)
    base = mmd2(x, y, x_valid=valid, y_valid=valid.flip(0), sigma=SIGMA)
    dirty = x.masked_fill(~valid.unsqueeze(-1), garbage)
    got = mmd2(dirty, y, x_valid=valid, y_valid=valid.flip(0), sigma=SIGMA)
    torch.testing.assert_close(got, base, atol=REF_ATOL, rtol=0)


def test_nan_padding_gives_finite_value_and_gradient():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    valid = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    x = x.masked_fill(~valid.unsqueeze(-1), float("nan")).requires_grad_(True)
    y = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    mmd2(x, y, x_valid=valid, sigma="median").sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[~valid] == 0).all()


def test_multiple_bandwidths_sum_their_mmds():
    """MMD² is linear in the kernel, and a list of bandwidths sums the kernels."""
    gen = torch.Generator().manual_seed(1)
    x, y = (torch.randn(3, k, 4, generator=gen, dtype=torch.float64) for k in (7, 5))
    for unbiased in (False, True):
        both = mmd2(x, y, sigma=[0.5, 3.0], unbiased=unbiased)
        parts = mmd2(x, y, sigma=0.5, unbiased=unbiased) + mmd2(x, y, sigma=3.0, unbiased=unbiased)
        torch.testing.assert_close(both, parts, atol=REF_ATOL, rtol=0)


def test_unbiased_estimator_mean_is_near_zero_for_same_distribution():
    gen = torch.Generator().manual_seed(2)
    draws, n = 400, 8
    x = torch.randn(draws, n, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(draws, n, 3, generator=gen, dtype=torch.float64)
    u = mmd2(x, y, sigma=1.0, unbiased=True)
    v = mmd2(x, y, sigma=1.0)
    stderr = float(u.std()) / draws**0.5
    assert abs(float(u.mean())) < 4 * stderr  # unbiased: E[U] = MMD² = 0 (4 standard errors)
    assert float(v.mean()) > 10 * stderr  # the V-statistic is biased upwards by ~ (E k(x,x) - E k(x,y)) 2/n


def test_unbiased_estimator_detects_a_shift():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(200, 8, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(200, 8, 3, generator=gen, dtype=torch.float64) + 1.0
    assert float(mmd2(x, y, sigma=1.0, unbiased=True).mean()) > 0.1


def test_empty_rows_give_zero():
    x, y = torch.randn(2, 4, 3), torch.randn(2, 5, 3)
    vx = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    vy = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert float(mmd2(x, y, x_valid=vx, y_valid=vy)[1]) == 0.0
    assert float(mmd2(x, y, x_valid=vx, y_valid=vy, unbiased=True)[0]) == 0.0  # one y token: U undefined


def test_median_sigma_is_the_median_pairwise_distance():
    gen = torch.Generator().manual_seed(4)
    x, y = (torch.randn(1, k, 2, generator=gen, dtype=torch.float64) for k in (5, 4))
    z = torch.cat([x[0], y[0]]).numpy()
    dist = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[~np.eye(9, dtype=bool)]
    lower_median = np.sort(dist)[(dist.size - 1) // 2]  # torch.nanmedian returns the lower median
    assert float(median_sigma(x, y)[0]) == pytest.approx(lower_median, rel=1e-9)
    torch.testing.assert_close(mmd2(x, y, sigma="median"), mmd2(x, y, sigma=lower_median), atol=REF_ATOL, rtol=0)


def test_pooled_equals_mmd_on_concatenated_valid_tokens():
    gen = torch.Generator().manual_seed(5)
    x, y = (torch.randn(b, k, 2, generator=gen, dtype=torch.float64) for b, k in ((3, 4), (2, 6)))
    vx = torch.arange(4)[None] < torch.tensor([4, 2, 1])[:, None]
    vy = torch.arange(6)[None] < torch.tensor([6, 3])[:, None]
    got = mmd2_pooled(x, y, x_valid=vx, y_valid=vy, sigma=SIGMA)
    assert float(got) == pytest.approx(_ref(x[vx].numpy(), y[vy].numpy(), [SIGMA], False), abs=REF_ATOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_inputs_keep_their_dtype_and_stay_finite(dtype):
    x, y = torch.randn(2, 6, 4).to(dtype).requires_grad_(True), torch.randn(2, 3, 4).to(dtype)
    out = mmd2(x, y, sigma="median", median_scales=(0.5, 1.0, 2.0))
    out.float().sum().backward()
    assert out.dtype == dtype and torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_rejects_mismatched_shapes_and_bad_bandwidths():
    with pytest.raises(ValueError, match="same B and d"):
        mmd2(torch.randn(2, 3, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="bandwidths must be > 0"):
        mmd2(torch.randn(2, 3, 4), torch.randn(2, 3, 4), sigma=[1.0, 0.0])
    with pytest.raises(ValueError, match="'median'"):
        mmd2(torch.randn(2, 3, 4), torch.randn(2, 3, 4), sigma="mean")
