r"""MISA's three auxiliary losses as plain functions (MMSA 2.2.1 ``trains/singleTask/MISA.py``: ``DiffLoss``,
``CMD``, ``MSE``), equal to MMSA's classes to float32 round-off (``tests/test_mmsa_misa.py``).

Reference: Hazarika et al., MISA: Modality-Invariant and -Specific Representations for Multimodal Sentiment
Analysis, ACM MM 2020, §3.4, Eqs. 6–9; CMD from Zellinger et al., ICLR 2017, Eq. 4 (without its 1/|b−a|^k scaling,
as MISA's code).
"""

from __future__ import annotations

from torch import Tensor


def difference_loss(x: Tensor, y: Tensor) -> Tensor:
    r"""Soft orthogonality of two batches of codes (MISA's $\mathcal L_{diff}$ for one pair).

    $$\mathcal L = \frac{1}{d_x d_y} \lVert \tilde X^\top \tilde Y \rVert_F^2,\qquad
    \tilde X_i = \frac{X_i - \bar X}{\lVert X_i - \bar X \rVert_2 + 10^{-6}}$$

    Rows are centred over the batch, then scaled to unit norm with the norm treated as a constant (MMSA detaches
    it). Reference: MISA §3.4, Eq. 8. Symmetric in x and y. Shapes: x (B, d_x), y (B, d_y) -> ().
    """
    B = x.shape[0]
    x, y = x.reshape(B, -1), y.reshape(B, -1)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    x = x / (x.norm(p=2, dim=1, keepdim=True).detach() + 1e-6)
    y = y / (y.norm(p=2, dim=1, keepdim=True).detach() + 1e-6)
    return (x.t() @ y).pow(2).mean()  # (d_x, d_y) -> ()


def cmd(x: Tensor, y: Tensor, n_moments: int) -> Tensor:
    r"""Central moment discrepancy between two batches of codes (MISA's $\mathcal L_{sim}$ for one pair).

    $$\mathrm{CMD}_K(X, Y) = \lVert \mathbb E[X] - \mathbb E[Y] \rVert_2
    + \sum_{k=2}^{K} \lVert c_k(X) - c_k(Y) \rVert_2,\qquad c_k(X) = \mathbb E[(X - \mathbb E[X])^k]$$

    Expectations are batch means, powers elementwise. Reference: MISA §3.4, Eq. 7; Zellinger et al. 2017.
    Shapes: x (B, d), y (B', d) -> ().
    """
    mx, my = x.mean(0), y.mean(0)
    sx, sy = x - mx, y - my
    total = (mx - my).pow(2).sum() ** 0.5
    for k in range(2, n_moments + 1):
        total = total + (sx.pow(k).mean(0) - sy.pow(k).mean(0)).pow(2).sum() ** 0.5
    return total


def reconstruction_loss(pred: Tensor, target: Tensor) -> Tensor:
    r"""Mean squared error $\frac{1}{n}\lVert \text{target} - \text{pred} \rVert_2^2$ over all n elements
    (MISA's $\mathcal L_{recon}$ for one modality; MISA §3.4, Eq. 9). Shapes: (B, d), (B, d) -> ()."""
    return (target - pred).pow(2).sum() / target.numel()


__all__ = ["cmd", "difference_loss", "reconstruction_loss"]
