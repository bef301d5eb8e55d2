r"""The ADL's losses: the fit loss between predicted and OT rows (Eq. 13), and the contrastive loss (Eq. 16–17).

Fit loss, per pair with $l = T_1$ valid present tokens and window cells $\Omega$ (ok cells only):

$$\mathcal L_{fit}^{paper} = \frac{1}{(2W+1)\,l}\sqrt{\sum_{(i,o)\in\Omega} (\bar A^\star_{io} - \hat T_{io})^2},\qquad
\mathcal L_{fit}^{mse} = \frac{1}{|\Omega|}\sum_{\Omega} (\bar A^\star_{io} - \hat T_{io})^2,\qquad
\mathcal L_{fit}^{kl} = \frac1l\sum_i \sum_o \bar A^\star_{io}\log\frac{\bar A^\star_{io}}{\hat T_{io}}$$

averaged over the pairs in the batch. Contrastive loss over the $N_b$ rows of a batch, with
$s_b, t_b$ masked-mean pooled sequences and cosine similarities:

$$\mathcal L_{con} = -\frac{1}{N_b}\sum_b \log\frac{\exp(\cos(s_b, t_b)/\tau)}{\sum_{b'}\exp(\cos(s_b, t_{b'})/\tau)}$$

Reference: MM-Align (Han et al., EMNLP 2022), §3.4 Eq. 13, §3.5 Eq. 16–17.
Notation: $\bar A^\star$ = ``target``, $\hat T$ = ``pred`` (window form), τ = ``temperature``.
Deviations: Eq. 13 is computed per pair (the paper's $l$ is the pair's length) with a 1e-12 floor
inside the square root (its gradient is infinite at 0). Eq. 17 uses the raw dot product $s^\top t$;
here cosine, as SimCLR (Chen et al. 2020, which Eq. 16 follows), because the pooled sequences'
dot product can be lowered without bound by inflating their norms. Pooling replaces the [CLS]
token mmcore's encoders do not have.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["fit_loss", "contrastive_loss", "masked_mean"]

_SQRT_FLOOR = 1e-12
_LOG_FLOOR = 1e-12  # predicted probabilities under this count as this in the KL (a target 0 adds 0)


def fit_loss(pred: Tensor, target: Tensor, ok: Tensor, kind: str = "paper") -> Tensor:
    """Mean fit loss over the pairs (see the module docstring).

    Shapes: pred, target (B, T_1, 2W+1), ok (B, T_1, 2W+1) bool -> scalar. B = 0 gives 0.
    """
    if pred.shape != target.shape or ok.shape != pred.shape:
        raise ValueError(f"fit_loss: pred {tuple(pred.shape)}, target {tuple(target.shape)} and ok {tuple(ok.shape)} "
                         "must have the same (B, T_1, 2W+1) shape")
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
        elif kind == "mse":
            per = sq / okf.sum((1, 2)).clamp_min(1.0)
        else:
            raise ValueError(f"fit_loss: kind must be 'paper', 'mse' or 'kl'; got {kind!r}")
    return per.mean()


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over valid tokens. Shapes: x (B, T, d), valid (B, T) -> (B, d)."""
    w = valid.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def contrastive_loss(s: Tensor, t: Tensor, temperature: float) -> Tensor:
    """InfoNCE of Eq. 16 with cosine scores; rows b of s and t are the positive pairs.

    Shapes: s, t (N, d) -> scalar; N < 2 gives 0 (no negatives).
    """
    if s.shape != t.shape or s.dim() != 2:
        raise ValueError(f"contrastive_loss: s is {tuple(s.shape)} and t is {tuple(t.shape)}; need two (N, d)")
    if s.shape[0] < 2:
        return (s.sum() + t.sum()) * 0.0
    logits = F.normalize(s, dim=-1) @ F.normalize(t, dim=-1).T / temperature  # (N, N)
    return F.cross_entropy(logits, torch.arange(s.shape[0], device=s.device))
