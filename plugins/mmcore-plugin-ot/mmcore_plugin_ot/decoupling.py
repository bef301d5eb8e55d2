r"""DecAlign's decoupling and homogeneity losses (plain functions over padded token sets).

Padding follows the core convention: ``valid (B, T)`` is True on real tokens; padded tokens never
enter a sum. Everything is computed in float32 (float64 if the input is float64).
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor

from mmcore.functional import masked_mean

from ._masks import compute_dtype
from .mmd import mmd2

#: Norm floor of the decoupling cosine: an all-zero instance has cosine 0 instead of 0/0.
COS_EPS = 1e-8


def decoupling_loss(unique: Tensor, common: Tensor, valid: Tensor, *, squared: bool = False) -> Tensor:
    r"""Mean over instances of the cosine between an instance's unique and common features.

    $$\mathcal L^{(m)}_{dec} = \frac1B \sum_b \frac{\langle F^{(m)}_{uni,b},\, F^{(m)}_{com,b} \rangle_F}
      {\lVert F^{(m)}_{uni,b}\rVert_F\, \lVert F^{(m)}_{com,b}\rVert_F}$$

    where $F_{\cdot,b}$ (T_b, d) holds the valid tokens of instance $b$ and $\langle\cdot,\cdot\rangle_F$
    is the Frobenius inner product (the instance's whole matrix, as DecAlign's code flattens it).
    ``squared=True`` averages $\cos^2$ instead, which is minimised at orthogonality.

    Reference: DecAlign (arXiv 2503.11892), §3.1, Eq. 1.
    Shapes: unique, common (B, T, d), valid (B, T) -> scalar.
    """
    work = compute_dtype(unique, common)
    keep = valid.unsqueeze(-1)
    u = torch.where(keep, unique.to(work), torch.zeros((), dtype=work, device=unique.device))  # (B, T, d)
    c = torch.where(keep, common.to(work), torch.zeros((), dtype=work, device=common.device))
    num = (u * c).sum((1, 2))  # (B,)
    den = u.flatten(1).norm(dim=1).clamp_min(COS_EPS) * c.flatten(1).norm(dim=1).clamp_min(COS_EPS)
    cos = num / den  # (B,)
    return (cos.square() if squared else cos).mean()


def moments(x: Tensor, valid: Tensor, var_floor: float) -> tuple[Tensor, Tensor, Tensor]:
    r"""Mean, covariance and per-dimension skewness of the valid tokens of a batch.

    $$\mu = \tfrac1N \textstyle\sum_n z_n,\quad \Sigma = \tfrac1N \sum_n (z_n - \mu)(z_n - \mu)^\top,\quad
      \Gamma_k = \tfrac1N \sum_n \Big(\frac{z_{nk} - \mu_k}{\sqrt{\Sigma_{kk} + s_{\min}}}\Big)^3$$

    over the $N$ valid tokens $z_n$ of every instance. $s_{\min}$ (``var_floor``) bounds the
    standardisation: $|\Gamma_k| \le \sqrt N$ even for a constant dimension.
    Shapes: x (B, T, d), valid (B, T) -> mu (d,), Sigma (d, d), Gamma (d,).
    """
    work = compute_dtype(x)
    z = x.to(work)[valid]  # (N, d)
    N = max(z.shape[0], 1)
    mu = z.sum(0) / N  # (d,)
    zc = z - mu  # (N, d)
    cov = zc.transpose(0, 1) @ zc / N  # (d, d)
    std = (torch.diagonal(cov) + var_floor).sqrt()  # (d,)
    skew = (zc / std).pow(3).sum(0) / N  # (d,)
    return mu, cov, skew


def homogeneity_loss(common: dict[str, Tensor], valid: dict[str, Tensor], *, var_floor: float,
                     sigma: float | None) -> Tensor:
    r"""DecAlign's homogeneity loss $\mathcal L_{homo} = \mathcal L_{sem} + \mathcal L_{MMD}$ over the common features.

    $$\mathcal L_{sem} = \frac{1}{M(M-1)\,d}\sum_{i<j} \lVert\mu_i - \mu_j\rVert^2 + \lVert\Sigma_i - \Sigma_j\rVert_F^2
      + \lVert\Gamma_i - \Gamma_j\rVert^2,\qquad
      \mathcal L_{MMD} = \frac{2}{M(M-1)} \sum_{i<j} \mathrm{MMD}^2(\bar Z_i, \bar Z_j)$$

    with the moments of :func:`moments` over each modality's valid tokens, and $\bar Z_m$ (B, d) the
    mean-pooled common features of the instances (the MMD of DecAlign's code; Gaussian kernel with
    bandwidth ``sigma``, or the median heuristic when None).

    Reference: DecAlign (arXiv 2503.11892), §3.3.1 Eq. 10, §3.3.2 Eq. 11-12.
    Deviations: $\mathcal L_{sem}$ is divided by d (per feature) so that it does not grow with
    d_model; the paper's appendix moments are not available, so skewness is the standardised third
    moment per dimension (as DecAlign's code), with the variance floor above.
    Shapes: common[m] (B, T_m, d), valid[m] (B, T_m) -> scalar (0 with fewer than 2 modalities).
    """
    names = list(common)
    M = len(names)
    first = common[names[0]]
    if M < 2:
        return first.new_zeros((), dtype=compute_dtype(first))
    d = first.shape[-1]
    stats = {m: moments(common[m], valid[m], var_floor) for m in names}
    pooled = {m: masked_mean(common[m].to(compute_dtype(common[m])), valid[m]) for m in names}  # (B, d)
    sem, mmd = 0.0, 0.0
    for i, j in combinations(names, 2):
        (mu_i, cov_i, sk_i), (mu_j, cov_j, sk_j) = stats[i], stats[j]
        sem = sem + (mu_i - mu_j).square().sum() + (cov_i - cov_j).square().sum() + (sk_i - sk_j).square().sum()
        bw = "median" if sigma is None else sigma
        # instances without an observed token (a missing modality) are left out of the pooled sets
        mmd = mmd + mmd2(pooled[i], pooled[j], x_valid=valid[i].any(1), y_valid=valid[j].any(1), sigma=bw)
    return sem / (M * (M - 1) * d) + 2.0 * mmd / (M * (M - 1))
