r"""The alignment dynamics solver: windowed cosine cost and entropic OT plans as fitting targets.

$$M_{ij} = \begin{cases} 1 - \cos(z^1_i, z^2_j) & |j - c_i| \le W \\ +\infty & \text{otherwise}\end{cases}
\qquad A^\star = \arg\min_{A\mathbf 1 = a,\ A^\top \mathbf 1 = b,\ A \ge 0} \sum_{ij} A_{ij} M_{ij} - \mu H(A)$$

with $a_i = 1/T_1$ on valid present tokens, $b_j$ uniform over the covered valid victim tokens
(:mod:`mmcore_plugin_adl.window`), and $A^\star$ from ``mmcore_plugin_ot.sinkhorn_plan`` (batched,
log domain: a ``+inf`` cost is a hard mask, so $A^\star_{ij} = 0$ exactly outside the window and no
NaN appears for small μ). The fitting target is each row as a distribution,
$\bar A^\star_{ij} = A^\star_{ij} / \sum_{j'} A^\star_{ij'}$ ($= T_1 A^\star_{ij}$).

Reference: MM-Align (Han et al., EMNLP 2022), §3.4, Eq. 6–11; Appendix C (window-style solution).
Notation: μ is ``reg``; $z^1$ the present (m¹) and $z^2$ the victim (m²) encodings; K = W = ``window``.
Deviations from the authors' code (``solver: authors`` restores it, :mod:`mmcore_plugin_adl.authors`):
the authors add a finite barrier (+100) instead of a ``+inf`` mask, use μ = 5 (``exp(-0.2 M)``) and a
cosine eps of 1e-5, cast the cost to float32, and run a loop that only ever rescales rows — row
normalisation, then row i multiplied by (1/l) / (sum of column i) — so the column marginal is never
imposed; their targets ``P / P.sum(-1)`` divide column j by the sum of row j and are neither row nor
column distributions (on the authors' fixtures, at the same μ = 5, up to 0.02–0.37 per pair away from
these balanced targets at W = 2 and 0.01–0.06 at W = 8: ``experiments/authors_gap.py``). Here both
marginals are imposed (Eq. 8) and the solver runs to ``tol``. No gradient flows through the solver
(Appendix D: it is non-parametric).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .window import WindowGeometry, to_window

__all__ = ["windowed_cost", "ot_targets"]

_COS_EPS = 1e-8  # a zero vector (a missing instance's encoding of zeros) has cosine 0, not 0/0


def windowed_cost(z1: Tensor, z2: Tensor, band: Tensor) -> Tensor:
    r"""$M_{ij} = 1 - \cos(z^1_i, z^2_j)$ inside the band, $+\infty$ outside (Eq. 7).

    Shapes: z1 (B, T_1, d), z2 (B, T_2, d), band (B, T_1, T_2) bool -> cost (B, T_1, T_2).
    """
    if z1.shape[0] != z2.shape[0] or z1.shape[-1] != z2.shape[-1]:
        raise ValueError(f"windowed_cost: z1 is {tuple(z1.shape)} and z2 is {tuple(z2.shape)}; need the same B and d")
    if band.shape != (z1.shape[0], z1.shape[1], z2.shape[1]):
        raise ValueError(f"windowed_cost: band is {tuple(band.shape)}; expected {(z1.shape[0], z1.shape[1], z2.shape[1])}")
    n1 = z1 / z1.norm(dim=-1, keepdim=True).clamp_min(_COS_EPS)
    n2 = z2 / z2.norm(dim=-1, keepdim=True).clamp_min(_COS_EPS)
    cost = 1.0 - torch.bmm(n1, n2.transpose(1, 2))  # (B, T_1, T_2)
    return cost.masked_fill(~band, math.inf)


@torch.no_grad()
def ot_targets(z1: Tensor, z2: Tensor, valid1: Tensor, geo: WindowGeometry, reg: float, *,
               max_iter: int = 200, tol: float = 1e-4) -> Tensor:
    r"""Row-normalised windowed OT plans $\bar A^\star$ in window form, the fitter's targets.

    Shapes: z1 (B, T_1, d), z2 (B, T_2, d), valid1 (B, T_1) -> targets (B, T_1, 2W+1); each valid
    row sums to 1, padded rows and cells outside the window are 0.

    Args:
        z1: present-modality encodings (detached here).
        z2: victim encodings of the same pairs (complete rows only).
        valid1: valid mask of z1; the victim's valid mask is carried by ``geo``.
        geo: the window of these pairs (:func:`mmcore_plugin_adl.window.window_geometry`).
        reg: μ > 0.
        max_iter, tol: Sinkhorn knobs (``sinkhorn_plan``).
    """
    from mmcore_plugin_ot.sinkhorn import sinkhorn_plan

    z1, z2 = z1.detach().float(), z2.detach().float()
    cost = windowed_cost(z1, z2, geo.band)  # (B, T_1, T_2)
    a = valid1.float()
    a = a / a.sum(1, keepdim=True).clamp_min(1.0)  # (B, T_1)
    b = geo.covered.float()
    b = b / b.sum(1, keepdim=True).clamp_min(1.0)  # (B, T_2): uncovered positions carry no mass
    plan = sinkhorn_plan(a, b, cost, reg, max_iter=max_iter, tol=tol, detach=True).plan  # (B, T_1, T_2)
    rows = plan.sum(-1, keepdim=True)  # (B, T_1, 1)
    target = torch.where(rows > 0, plan / rows.clamp_min(torch.finfo(plan.dtype).tiny), torch.zeros_like(plan))
    return to_window(target, geo)  # (B, T_1, 2W+1)
