r"""Gaussian-kernel maximum mean discrepancy (MMD²) between padded token sets.

Padding follows the core convention: ``x_valid (B, n)`` is True on real tokens (``None`` = all real).
Padded tokens never enter a kernel sum, whatever their feature values.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from ._masks import compute_dtype, tiny

__all__ = ["mmd2", "mmd2_pooled", "median_sigma"]

Sigma = Union[float, Sequence[float], Tensor, str]


def mmd2(
    x: Tensor,
    y: Tensor,
    *,
    x_valid: Tensor | None = None,
    y_valid: Tensor | None = None,
    sigma: Sigma = 1.0,
    median_scales: Sequence[float] = (1.0,),
    unbiased: bool = False,
) -> Tensor:
    r"""Squared MMD with a (sum of) Gaussian kernel(s), per pair of padded token sets.

    $$\mathrm{MMD}^2_b = \frac{1}{n^2}\sum_{i,i'} k(x_i, x_{i'}) + \frac{1}{m^2}\sum_{j,j'} k(y_j, y_{j'})
      - \frac{2}{nm}\sum_{i,j} k(x_i, y_j), \qquad k(x, y) = \sum_{s} \exp\Big(-\frac{\lVert x - y
      \rVert_2^2}{2\sigma_s^2}\Big)$$

    where $x_i \in \mathbb{R}^d$ ($i \le n$) and $y_j$ ($j \le m$) are the valid tokens of one pair
    and $\sigma_s$ the bandwidths. With ``unbiased=True`` the U-statistic is returned instead: the
    two within-set sums skip $i = i'$ (resp. $j = j'$) and are divided by $n(n-1)$ (resp. $m(m-1)$);
    it is an unbiased estimate of $\mathrm{MMD}^2$ and can be negative.

    Reference: AlignMamba (arXiv 2412.00833), §3.3, Eq. 7–9; DecAlign (arXiv 2503.11892), §3.3,
    Eq. 11; Gretton et al. 2012, "A kernel two-sample test" (JMLR), Eq. 3 (U) and 5 (V), §8 (median).
    Notation: AlignMamba's σ is ``sigma``; its T (same length for X and Y) is our n and m.
    Deviations: the papers use one bandwidth; a sequence sums one kernel per bandwidth (a common
    multi-scale variant). ``sigma="median"`` uses σ = median pairwise distance of the pooled valid
    tokens of each pair (detached), times each of ``median_scales``.
    Shapes: x (B, n, d), y (B, m, d), x_valid (B, n), y_valid (B, m) -> (B,); unbatched x (n, d),
    y (m, d) -> ().

    Args:
        x: first token sets.
        y: second token sets (same d).
        x_valid: True on real tokens of x; None = all.
        y_valid: True on real tokens of y; None = all.
        sigma: a bandwidth, a sequence/1-D tensor of bandwidths (kernels summed), or "median".
        median_scales: multipliers of the median bandwidth (kernels summed); only with "median".
        unbiased: the U-statistic instead of the (biased, ≥ 0) V-statistic.
    Returns:
        MMD² per pair in the promoted input dtype (computed in ≥ float32). A pair with no valid
        token on a side (or fewer than 2 for ``unbiased``) gives 0. The V-statistic is not clamped:
        rounding can make it about -1e-7 (float32); clamp before a square root.
    Raises:
        ValueError: on shape mismatch or a non-positive bandwidth.
    """
    unbatched = x.dim() == 2
    if unbatched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
        x_valid = None if x_valid is None else x_valid.unsqueeze(0)
        y_valid = None if y_valid is None else y_valid.unsqueeze(0)
    B, n, d = _check(x, y, x_valid, y_valid)
    m = y.shape[1]
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = compute_dtype(x, y)
    vx = torch.ones(B, n, dtype=torch.bool, device=x.device) if x_valid is None else x_valid.bool()
    vy = torch.ones(B, m, dtype=torch.bool, device=y.device) if y_valid is None else y_valid.bool()
    fx, fy = vx.to(work), vy.to(work)  # (B, n), (B, m)
    nx, ny = fx.sum(1), fy.sum(1)  # (B,)

    # Padded tokens become exact zeros (even if they hold NaN), then everything is centred on the
    # pooled valid mean (detached) so that ||x||^2 + ||y||^2 - 2 x.y cancels less.
    x0 = torch.where(vx.unsqueeze(-1), x.to(work), torch.zeros((), dtype=work, device=x.device))  # (B, n, d)
    y0 = torch.where(vy.unsqueeze(-1), y.to(work), torch.zeros((), dtype=work, device=y.device))  # (B, m, d)
    shift = ((x0.sum(1) + y0.sum(1)) / (nx + ny).clamp_min(1.0).unsqueeze(-1)).detach().unsqueeze(1)  # (B, 1, d)
    xc = torch.where(vx.unsqueeze(-1), x0 - shift, torch.zeros_like(x0))  # (B, n, d)
    yc = torch.where(vy.unsqueeze(-1), y0 - shift, torch.zeros_like(y0))  # (B, m, d)
    dxx, dyy, dxy = _sqdist(xc, xc), _sqdist(yc, yc), _sqdist(xc, yc)  # (B,n,n), (B,m,m), (B,n,m)

    sig = _bandwidths(sigma, median_scales, dxx, dyy, dxy, vx, vy)  # (B, S)
    kxx, kyy, kxy = _kernel(dxx, sig), _kernel(dyy, sig), _kernel(dxy, sig)

    def quad(u, k, v):  # u^T K v per pair
        return torch.einsum("bi,bij,bj->b", u, k, v)

    cross = quad(fx, kxy, fy) / (nx * ny).clamp_min(1.0)
    if unbiased:
        sxx = (quad(fx, kxx, fx) - (torch.diagonal(kxx, dim1=1, dim2=2) * fx).sum(1)) / (nx * (nx - 1)).clamp_min(1.0)
        syy = (quad(fy, kyy, fy) - (torch.diagonal(kyy, dim1=1, dim2=2) * fy).sum(1)) / (ny * (ny - 1)).clamp_min(1.0)
        ok = (nx >= 2) & (ny >= 2)
    else:
        sxx = quad(fx, kxx, fx) / (nx * nx).clamp_min(1.0)
        syy = quad(fy, kyy, fy) / (ny * ny).clamp_min(1.0)
        ok = (nx >= 1) & (ny >= 1)
    out = torch.where(ok, sxx + syy - 2.0 * cross, torch.zeros_like(cross)).to(out_dtype)
    return out[0] if unbatched else out


def mmd2_pooled(
    x: Tensor,
    y: Tensor,
    *,
    x_valid: Tensor | None = None,
    y_valid: Tensor | None = None,
    sigma: Sigma = 1.0,
    median_scales: Sequence[float] = (1.0,),
    unbiased: bool = False,
) -> Tensor:
    r"""Squared MMD between all valid tokens of a batch of x and all valid tokens of a batch of y.

    $$\mathrm{MMD}^2\Big(\{x_{bi} : \mathrm{valid}^x_{bi}\},\ \{y_{bj} : \mathrm{valid}^y_{bj}\}\Big)$$

    i.e. :func:`mmd2` on the two pooled token sets (the distribution-level loss of AlignMamba Eq. 10
    when the batch, not the sequence, is the sample). Memory O((N_x + N_y)^2) for N_x, N_y valid
    tokens in total.

    Reference: as :func:`mmd2`.
    Shapes: x (B, n, d), y (B', m, d), x_valid (B, n), y_valid (B', m) -> (); (N, d) inputs also work.

    Returns:
        A scalar in the promoted input dtype.
    """
    xs = x.reshape(-1, x.shape[-1]) if x_valid is None else x[x_valid.bool()]  # (N_x, d)
    ys = y.reshape(-1, y.shape[-1]) if y_valid is None else y[y_valid.bool()]  # (N_y, d)
    return mmd2(xs, ys, sigma=sigma, median_scales=median_scales, unbiased=unbiased)


def median_sigma(x: Tensor, y: Tensor, *, x_valid: Tensor | None = None, y_valid: Tensor | None = None) -> Tensor:
    r"""Median heuristic bandwidth: the median distance between distinct valid tokens of x ∪ y.

    $$\sigma = \operatorname{median}\{\lVert z_k - z_l \rVert_2 : k \ne l\}, \quad z = (x_1..x_n, y_1..y_m)$$

    Reference: Gretton et al. 2012 (JMLR), §8. Computed without gradient; a pair with fewer than
    2 valid tokens, or all tokens (nearly) equal (median² under the smallest normal float), gets σ = 1.
    Shapes: x (B, n, d), y (B, m, d) -> (B,).
    """
    B, n, d = _check(x, y, x_valid, y_valid)
    m = y.shape[1]
    vx = torch.ones(B, n, dtype=torch.bool, device=x.device) if x_valid is None else x_valid.bool()
    vy = torch.ones(B, m, dtype=torch.bool, device=y.device) if y_valid is None else y_valid.bool()
    work = compute_dtype(x, y)
    with torch.no_grad():
        xc, yc = x.to(work), y.to(work)
        top = torch.cat([_sqdist(xc, xc), _sqdist(xc, yc)], 2)  # (B, n, n + m)
        bottom = torch.cat([_sqdist(yc, xc), _sqdist(yc, yc)], 2)  # (B, m, n + m)
        d2 = torch.cat([top, bottom], 1)  # (B, n + m, n + m)
        return _median_from(d2, vx, vy)[:, 0]


def _check(x, y, x_valid, y_valid):
    if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            f"mmd2: x is {tuple(x.shape)} but y is {tuple(y.shape)}; need x (B, n, d) and y (B, m, d) "
            "with the same B and d (or unbatched (n, d), (m, d))"
        )
    B, n, d = x.shape
    if x_valid is not None and tuple(x_valid.shape) != (B, n):
        raise ValueError(f"mmd2: x_valid is {tuple(x_valid.shape)} but x is {tuple(x.shape)}; need ({B}, {n})")
    if y_valid is not None and tuple(y_valid.shape) != (B, y.shape[1]):
        raise ValueError(f"mmd2: y_valid is {tuple(y_valid.shape)} but y is {tuple(y.shape)}; need ({B}, {y.shape[1]})")
    return B, n, d


def _sqdist(p: Tensor, q: Tensor) -> Tensor:
    """Squared Euclidean distances (B, n, d), (B, m, d) -> (B, n, m), clamped at 0."""
    pp = (p * p).sum(-1)  # (B, n)
    qq = (q * q).sum(-1)  # (B, m)
    return (pp.unsqueeze(2) + qq.unsqueeze(1) - 2.0 * torch.bmm(p, q.transpose(1, 2))).clamp_min(0.0)


def _kernel(d2: Tensor, sig: Tensor) -> Tensor:
    """Sum of Gaussian kernels: d2 (B, n, m), sig (B, S) -> (B, n, m)."""
    inv = (0.5 / sig.square()).clamp_max(torch.finfo(sig.dtype).max)  # a tiny σ must not give 0 * inf
    inv = inv.reshape(sig.shape[0], 1, 1, -1)  # (B, 1, 1, S)
    return torch.exp(-d2.unsqueeze(-1) * inv).sum(-1)


def _median_from(d2: Tensor, vx: Tensor, vy: Tensor) -> Tensor:
    """Median distance over distinct valid pairs of the pooled sample: (B, N, N) -> (B, 1)."""
    v = torch.cat([vx, vy], 1)  # (B, N)
    N = v.shape[1]
    pair = v.unsqueeze(2) & v.unsqueeze(1) & ~torch.eye(N, dtype=torch.bool, device=v.device)
    med = torch.nanmedian(torch.where(pair, d2, torch.full_like(d2, float("nan"))).flatten(1), dim=1).values
    ok = torch.isfinite(med) & (med >= tiny(med.dtype))  # sub-normal: 1 / σ² would overflow
    return torch.where(ok, med, torch.ones_like(med)).sqrt().unsqueeze(1)


def _bandwidths(sigma, median_scales, dxx, dyy, dxy, vx, vy) -> Tensor:
    """Resolve ``sigma`` to per-pair bandwidths (B, S), detached for the median heuristic."""
    B, work, dev = dxx.shape[0], dxx.dtype, dxx.device
    if isinstance(sigma, str):
        if sigma != "median":
            raise ValueError(f"mmd2: sigma must be a number, a sequence of numbers or 'median'; got {sigma!r}")
        with torch.no_grad():
            d2 = torch.cat([torch.cat([dxx, dxy], 2), torch.cat([dxy.transpose(1, 2), dyy], 2)], 1)
            med = _median_from(d2, vx, vy)  # (B, 1)
        scales = torch.as_tensor(list(median_scales), dtype=work, device=dev).reshape(1, -1)
        sig = med * scales  # (B, S)
    else:
        sig = torch.as_tensor(sigma, dtype=work, device=dev).reshape(1, -1).expand(B, -1)
    if sig.numel() == 0 or bool((sig <= 0).any()):
        raise ValueError(f"mmd2: bandwidths must be > 0; got sigma={sigma!r}, median_scales={median_scales!r}")
    return sig
