r"""The masked-position SmoothL1 reconstruction loss of MGMR-Net (a plain function, no module)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["masked_smooth_l1"]


def masked_smooth_l1(pred: Tensor, target: Tensor, region: Tensor, *, beta: float = 1.0,
                     norm: float | None = None) -> Tensor:
    r"""Per-row SmoothL1 summed over the positions in ``region`` only, divided by a constant.

    $$\ell_b = \frac{1}{Z} \sum_{t=1}^{T} \sum_{k=1}^{d} M_{b,t}\, s_\beta(\hat x_{b,t,k} - x_{b,t,k}),\qquad
      s_\beta(u) = \begin{cases} 0.5\,u^2/\beta & |u| < \beta \\ |u| - 0.5\,\beta & \text{otherwise} \end{cases}$$

    with $\hat x$ = ``pred``, $x$ = ``target``, $M$ = ``region`` and $Z$ = ``norm`` (default $T d$).

    Reference: MGMR-Net (Electronics 2025, 14(15):3088), §3.5, the $L_{rec}(m)$ equation: SmoothL1
    between $X'_m \odot \mathrm{Mask}$ and $X_m \odot \mathrm{Mask}$, summed over positions.
    Notation: Mask is ``region``; the paper's $x_i, y_i$ are ``pred``, ``target``; its threshold 1 is ``beta``.
    Deviations: the sum is divided by the constant $Z$ (the caller passes $L_m d_m$, the declared length
    times the feature size), which only rescales α_m, so that α is on a per-element scale. Positions
    outside ``region`` are selected away with ``torch.where`` (not multiplied by 0), so NaN/inf there, in
    ``pred`` or ``target`` (e.g. in padding), can neither reach the loss nor its gradient.
    Shapes: pred (B, T, d), target (B, T, d), region (B, T) bool -> (B,).

    Args:
        pred: the reconstruction.
        target: the clean features.
        region: True where the loss applies (masked, valid positions of present rows).
        beta: SmoothL1 threshold (> 0).
        norm: the constant Z; ``None`` = T·d of the inputs.
    Returns:
        (B,) per-row loss; exactly 0 for a row whose region is empty.
    Raises:
        ValueError: shapes disagree, region is not bool, or beta/norm are not positive.
    """
    if pred.dim() != 3 or pred.shape != target.shape:
        raise ValueError(f"masked_smooth_l1: pred and target must both be (B, T, d); got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if region.shape != pred.shape[:2] or region.dtype != torch.bool:
        raise ValueError(f"masked_smooth_l1: region must be a bool tensor of shape (B, T)={tuple(pred.shape[:2])}; "
                         f"got {region.dtype} {tuple(region.shape)}")
    if beta <= 0 or (norm is not None and norm <= 0):
        raise ValueError(f"masked_smooth_l1: beta and norm must be > 0; got beta={beta}, norm={norm}")
    B, T, d = pred.shape
    keep = region.unsqueeze(-1)  # (B, T, 1)
    # outside the region both sides become the same finite value: difference 0, gradient 0 (a NaN/inf
    # prediction there would otherwise give a NaN gradient through smooth_l1's backward)
    safe_pred = torch.where(keep, pred, torch.zeros((), dtype=pred.dtype, device=pred.device))
    safe_target = torch.where(keep, target, safe_pred.detach())
    per = F.smooth_l1_loss(safe_pred, safe_target, reduction="none", beta=beta)  # (B, T, d)
    per = torch.where(keep, per, torch.zeros((), dtype=per.dtype, device=per.device))
    return per.sum(dim=(1, 2)) / (norm if norm is not None else T * d)  # (B,)
