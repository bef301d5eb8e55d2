r"""The ADL's losses: the fit loss between predicted and OT rows (Eq. 13), and the contrastive loss (Eq. 16–17).

Fit loss, per pair with $l = T_1$ valid present tokens and window cells $\Omega$ (ok cells only), in
window form (:func:`fit_loss`):

$$\mathcal L_{fit}^{paper} = \frac{1}{(2W+1)\,l}\sqrt{\sum_{(i,o)\in\Omega} (\bar A^\star_{io} - \hat T_{io})^2},\qquad
\mathcal L_{fit}^{mse} = \frac{1}{|\Omega|}\sum_{\Omega} (\bar A^\star_{io} - \hat T_{io})^2,\qquad
\mathcal L_{fit}^{kl} = \frac1l\sum_i \sum_o \bar A^\star_{io}\log\frac{\bar A^\star_{io}}{\hat T_{io}}$$

averaged over the pairs in the batch; and in dense form (:func:`fit_loss_authors`, the authors'
``_criterion_fit``), over every valid cell $(i, j)$ of the $l_1 \times l_2$ plan, summed over the batch:

$$\mathcal L_{fit}^{authors} = \sum_b \frac{1}{l_1 l_2} \sum_{i < l_1,\, j < l_2} (\hat A_{ij} - A^\star_{ij})^2$$

(out-of-window targets are compared with the predicted 0). Contrastive loss over the $N_b$ rows of
a batch, with $s_b, t_b$ one vector per sequence (masked mean or first step):

$$\mathcal L_{con} = -\frac{1}{N_b}\sum_b \log\frac{\exp(\sigma(s_b, t_b)/\tau)}{\sum_{b'}\exp(\sigma(s_b, t_{b'})/\tau)}$$

with $\sigma$ = cosine (default) or the dot product (the paper's Eq. 17 and the authors'), and the sum
instead of the mean with ``reduction="sum"`` (the authors': then $\mathcal L_{con}$ = −``contra_loss``).

Reference: MM-Align (Han et al., EMNLP 2022), §3.4 Eq. 13, §3.5 Eq. 16–17.
Notation: $\bar A^\star$ = ``target``, $\hat T$ = ``pred`` (window form), τ = ``temperature``.
Deviations (defaults): Eq. 13 is computed per pair (the paper's $l$ is the pair's length) with a
1e-12 floor inside the square root (its gradient is infinite at 0). Eq. 17's raw dot product is
replaced by the cosine, as SimCLR (Chen et al. 2020, which Eq. 16 follows), because the pooled
sequences' dot product can be lowered without bound by inflating their norms. Pooling replaces the
[CLS] token mmcore's encoders do not have. ``mse`` is mmcore's windowed mean, not the authors' loss:
``authors`` divides by all $l_1 l_2$ cells (not the window's) and sums over pairs (not averages) — 4.0×
(W = 2) and 6.0× (W = 8) mmcore's ``mse`` on the authors' fixtures (``experiments/authors_gap.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["fit_loss", "fit_loss_authors", "contrastive_loss", "masked_mean"]

_SQRT_FLOOR = 1e-12
_LOG_FLOOR = 1e-12  # predicted probabilities under this count as this in the KL (a target 0 adds 0)


def fit_loss(pred: Tensor, target: Tensor, ok: Tensor, kind: str = "paper") -> Tensor:
    """Mean window-form fit loss over the pairs (see the module docstring); ``authors`` is :func:`fit_loss_authors`.

    Shapes: pred, target (B, T_1, 2W+1), ok (B, T_1, 2W+1) bool -> scalar. B = 0 gives 0.
    """
    if pred.shape != target.shape or ok.shape != pred.shape:
        raise ValueError(f"fit_loss: pred {tuple(pred.shape)}, target {tuple(target.shape)} and ok {tuple(ok.shape)} "
                         "must have the same (B, T_1, 2W+1) shape")
    if kind not in ("paper", "mse", "kl"):
        raise ValueError(f"fit_loss: kind must be 'paper', 'mse' or 'kl' (the dense 'authors' loss is "
                         f"fit_loss_authors); got {kind!r}")
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    okf = ok.to(pred.dtype)
    rows = ok.any(-1).sum(-1).clamp_min(1).to(pred.dtype)  # (B,) l = valid present tokens
    width = pred.shape[-1]
    if kind == "kl":
        kl = target * (torch.log(target.clamp_min(_LOG_FLOOR)) - torch.log(pred.clamp_min(_LOG_FLOOR)))
        per = (kl * okf).sum((1, 2)) / rows
    else:
        sq = ((pred - target) ** 2 * okf).sum((1, 2))  # (B,)
        if kind == "paper":
            per = torch.sqrt(sq + _SQRT_FLOOR) / (width * rows)
        else:
            per = sq / okf.sum((1, 2)).clamp_min(1.0)
    return per.mean()


def fit_loss_authors(pred: Tensor, target: Tensor, cells: Tensor) -> Tensor:
    r"""$\sum_b \mathrm{mean}_{(i,j)\in \mathrm{cells}_b} (\hat A_{bij} - A^\star_{bij})^2$ — the authors' ``_criterion_fit``.

    Shapes: pred, target (B, T_1, T_2) dense (pred 0 outside the window), cells (B, T_1, T_2) bool
    (valid i, valid j) -> scalar. B = 0 gives 0.
    """
    if pred.shape != target.shape or cells.shape != pred.shape or pred.dim() != 3:
        raise ValueError(f"fit_loss_authors: pred {tuple(pred.shape)}, target {tuple(target.shape)} and cells "
                         f"{tuple(cells.shape)} must have the same dense (B, T_1, T_2) shape")
    cf = cells.to(pred.dtype)
    sq = ((pred - target.to(pred.dtype)) ** 2 * cf).sum((1, 2))  # (B,)
    return (sq / cf.sum((1, 2)).clamp_min(1.0)).sum()


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over valid tokens. Shapes: x (B, T, d), valid (B, T) -> (B, d)."""
    w = valid.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def contrastive_loss(s: Tensor, t: Tensor, temperature: float, score: str = "cosine",
                     reduction: str = "mean") -> Tensor:
    """InfoNCE of Eq. 16; rows b of s and t are the positive pairs, the softmax runs over t.

    ``score``: ``"cosine"`` or ``"dot"`` (Eq. 17); ``reduction``: ``"mean"`` (Eq. 16) or ``"sum"``.
    Shapes: s, t (N, d) -> scalar; N < 2 gives 0 (no negatives).
    """
    if s.shape != t.shape or s.dim() != 2:
        raise ValueError(f"contrastive_loss: s is {tuple(s.shape)} and t is {tuple(t.shape)}; need two (N, d)")
    if score not in ("cosine", "dot") or reduction not in ("mean", "sum"):
        raise ValueError(f"contrastive_loss: score must be 'cosine' or 'dot' and reduction 'mean' or 'sum'; got "
                         f"{score!r}, {reduction!r}")
    if s.shape[0] < 2:
        return (s.sum() + t.sum()) * 0.0
    if score == "cosine":
        s, t = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
    logits = s @ t.T / temperature  # (N, N)
    return F.cross_entropy(logits, torch.arange(s.shape[0], device=s.device), reduction=reduction)
