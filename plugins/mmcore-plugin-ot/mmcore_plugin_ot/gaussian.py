r"""Bures–Wasserstein (W₂) distances between Gaussians, batched and differentiable.

Both functions return the **squared** distance W₂²: it is what DecAlign's prototype cost uses, and
its gradient stays finite at W₂ = 0 (that of W₂ = sqrt(W₂²) does not). Batch dimensions broadcast, so
a (K₁, K₂) prototype cost is ``bures_wasserstein_squared(m1[:, None], c1[:, None], m2[None], c2[None])``.
Work is done in float64 if any input is float64, else float32; the result has the promoted input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._masks import compute_dtype, tiny

__all__ = ["bures_wasserstein_squared", "bures_wasserstein_squared_diag", "spd_sqrt"]


def bures_wasserstein_squared_diag(mean1: Tensor, var1: Tensor, mean2: Tensor, var2: Tensor) -> Tensor:
    r"""Squared W₂ distance between Gaussians with diagonal covariances (closed form).

    $$W_2^2 = \lVert \mu_1 - \mu_2 \rVert_2^2 + \sum_{k=1}^{d} \big(\sqrt{s_{1k}} - \sqrt{s_{2k}}\big)^2$$

    where $\mu_1, \mu_2 \in \mathbb{R}^d$ are the means and $s_1, s_2 \in \mathbb{R}^d_{>0}$ the variances
    (the covariance diagonals).

    Reference: Peyré & Cuturi 2019, "Computational Optimal Transport", Remark 2.31; POT
    ``ot.gaussian.bures_wasserstein_distance`` (which returns W₂ for full covariances).
    Notation: DecAlign's μ, Σ = diag(s) are ``mean``, ``var``.
    Shapes: mean (..., d), var (..., d) (broadcast against each other) -> (...).

    Args:
        mean1, var1: first Gaussian(s); variances > 0 (values under ``tiny`` are clamped to it).
        mean2, var2: second Gaussian(s).
    Returns:
        W₂² ≥ 0 in the promoted input dtype.
    """
    out_dtype = _out_dtype(mean1, var1, mean2, var2)
    work = compute_dtype(mean1, var1, mean2, var2)
    m1, v1, m2, v2 = (t.to(work) for t in (mean1, var1, mean2, var2))
    floor = tiny(work)
    mean_term = (m1 - m2).square().sum(-1)
    cov_term = (v1.clamp_min(floor).sqrt() - v2.clamp_min(floor).sqrt()).square().sum(-1)
    return (mean_term + cov_term).to(out_dtype)


def bures_wasserstein_squared(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> Tensor:
    r"""Squared W₂ distance between Gaussians with full SPD covariances.

    $$W_2^2 = \lVert \mu_1 - \mu_2 \rVert_2^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
      - 2 \operatorname{tr}\big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}$$

    where $\mu_i \in \mathbb{R}^d$ and $\Sigma_i \in \mathbb{S}^d_{++}$. The last trace is
    $\sum_k \sqrt{\lambda_k}$ over the eigenvalues of $M = \Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}$, so only
    $\Sigma_1^{1/2}$ (:func:`spd_sqrt`) needs eigenvectors; both backward passes stay finite when
    eigenvalues repeat (e.g. $\Sigma_1 = \Sigma_2 = I$).

    Reference: Peyré & Cuturi 2019, Remark 2.31 (Bures metric); DecAlign (arXiv 2503.11892),
    §3.2.2, Eq. 6; POT ``ot.gaussian.bures_wasserstein_distance`` returns the square root of this.
    Notation: DecAlign's μ, Σ are ``mean``, ``cov``.
    Deviations: eigenvalues of M are clamped at ``tiny`` before the square root, and the result
    at 0 (rounding can make it about -1e-15 · tr Σ); both only matter for singular or equal inputs.
    Shapes: mean (..., d), cov (..., d, d) (batch dims broadcast) -> (...).

    Args:
        mean1, cov1: first Gaussian(s); cov symmetric positive (semi-)definite.
        mean2, cov2: second Gaussian(s).
    Returns:
        W₂² ≥ 0 in the promoted input dtype.
    Raises:
        ValueError: if the covariances are not square (..., d, d) matching the means' d.
    """
    d = mean1.shape[-1]
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        if c.dim() < 2 or c.shape[-1] != d or c.shape[-2] != d:
            raise ValueError(
                f"bures_wasserstein_squared: {name} is {tuple(c.shape)} but the means have d={d}; need (..., {d}, {d})"
            )
    out_dtype = _out_dtype(mean1, cov1, mean2, cov2)
    work = compute_dtype(mean1, cov1, mean2, cov2)
    m1, c1, m2, c2 = (t.to(work) for t in (mean1, cov1, mean2, cov2))
    c1, c2 = torch.broadcast_tensors(c1, c2)
    s1 = spd_sqrt(c1)  # (..., d, d)
    inner = s1 @ c2 @ s1
    inner = 0.5 * (inner + inner.transpose(-1, -2))  # symmetric up to rounding; eigvalsh reads one triangle
    root_trace = torch.linalg.eigvalsh(inner).clamp_min(tiny(work)).sqrt().sum(-1)
    trace = torch.diagonal(c1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(c2, dim1=-2, dim2=-1).sum(-1)
    bures = (trace - 2.0 * root_trace).clamp_min(0.0)
    return ((m1 - m2).square().sum(-1) + bures).to(out_dtype)


def spd_sqrt(cov: Tensor) -> Tensor:
    r"""Symmetric square root of symmetric positive (semi-)definite matrices, via ``eigh``.

    $$\Sigma^{1/2} = V \operatorname{diag}(\sqrt{\max(\lambda, 0)}) V^\top,
      \qquad \Sigma = V \operatorname{diag}(\lambda) V^\top$$

    Backward solves the Sylvester equation $S\,\mathrm{d}S + \mathrm{d}S\,S = \mathrm{d}\Sigma$ in the
    eigenbasis, $(V^\top \mathrm{d}S V)_{kl} = (V^\top \mathrm{d}\Sigma V)_{kl} /
    (\sqrt{\lambda_k} + \sqrt{\lambda_l})$:
    unlike autograd through ``eigh`` (which divides by $\lambda_k - \lambda_l$), it is finite when
    eigenvalues repeat. Not twice differentiable.

    Reference: Lin & Maji 2017, "Improved bilinear pooling with CNNs" (BMVC), §3 (Lyapunov gradient).
    Shapes: cov (..., d, d) -> (..., d, d), same dtype (float32 or float64).
    """
    return _SpdSqrt.apply(cov)


class _SpdSqrt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cov: Tensor) -> Tensor:
        lam, vec = torch.linalg.eigh(cov)  # (..., d), (..., d, d)
        root = lam.clamp_min(0.0).sqrt()
        ctx.save_for_backward(root, vec)
        out = (vec * root.unsqueeze(-2)) @ vec.transpose(-1, -2)
        return 0.5 * (out + out.transpose(-1, -2))  # exactly symmetric, not just up to rounding

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        root, vec = ctx.saved_tensors
        g = 0.5 * (grad + grad.transpose(-1, -2))
        g = vec.transpose(-1, -2) @ g @ vec  # (..., d, d) in the eigenbasis
        denom = (root.unsqueeze(-1) + root.unsqueeze(-2)).clamp_min(tiny(root.dtype))
        return vec @ (g / denom) @ vec.transpose(-1, -2)


def _out_dtype(*ts: Tensor) -> torch.dtype:
    out = ts[0].dtype
    for t in ts[1:]:
        out = torch.promote_types(out, t.dtype)
    return out
