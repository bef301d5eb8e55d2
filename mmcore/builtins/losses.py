r"""Built-in standalone losses (computed from the pipeline state, weighted by the spec's ``losses``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..protocols import BuildContext, PipelineState
from .params import SupervisedContrastiveParams

__all__ = ["supervised_contrastive_loss", "regression_classes", "SupervisedContrastiveLoss"]


def regression_classes(y: Tensor, lo: float = -3.0, hi: float = 3.0) -> Tensor:
    """Sentiment scores to classes, ``round(clamp(y, lo, hi)) - lo`` (round half to even): (B,) -> (B,) long."""
    return (torch.round(y.clamp(lo, hi)) - lo).long()


def supervised_contrastive_loss(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    r"""Supervised contrastive loss over a batch (Khosla et al. 2020, $\mathcal L^{sup}_{out}$; DecAlign's CT).

    $$\ell_{ij} = \frac{f_i^\top f_j}{\tau} - \log \max\Big(\sum_{k \ne i} e^{f_i^\top f_k / \tau},\ 10^{-8}\Big),\qquad
      \mathcal L = -\frac{1}{|V|} \sum_{i \in V} \frac{1}{|P_i|}\sum_{j \in P_i} \ell_{ij}$$

    with $f$ the L2-normalised features, $P_i$ the other rows with the label of row i and $V$ the rows
    with at least one positive (0 when there is none). The logits are shifted by their row maximum
    (detached) first, which changes only rounding. Mirrors ``ATIO._contrastive_loss`` of DecAlign's
    code (taco-group/DecAlign 6fa8df9, ``trains/ATIO.py``); the paper's Table 4 "CT".
    Shapes: features (B, p), labels (B,) integer classes -> ().
    """
    B = features.shape[0]
    f = F.normalize(features, dim=1)
    logits = f @ f.transpose(0, 1) / temperature  # (B, B)
    eye = torch.eye(B, dtype=torch.bool, device=features.device)
    pos = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~eye  # (B, B)
    rows = pos.any(1)
    if not bool(rows.any()):
        return features.sum() * 0.0
    logits = logits - logits.amax(1, keepdim=True).detach()
    denom = torch.exp(logits).masked_fill(eye, 0.0).sum(1, keepdim=True).clamp_min(1e-8)  # (B, 1)
    log_prob = logits - torch.log(denom)
    posf = pos.to(logits.dtype)
    per_row = (log_prob * posf).sum(1)[rows] / posf.sum(1)[rows]
    return -per_row.mean()


class SupervisedContrastiveLoss(nn.Module):
    r"""Supervised contrastive loss on ``state.rep`` (the fused representation), labels from the batch.

    $\mathcal L_{CT}$ of :func:`supervised_contrastive_loss`; regression labels are binned by
    :func:`regression_classes` with ``label_range``. Rows are the whole batch (missing modalities
    included: the representation exists for every row).

    Reference: DecAlign's code (``trains/ATIO.py``, ``ct_weight`` × this on ``final_rep``; MOSI 0.003,
    MOSEI 0.001, SIMS 0.01) and the paper's Table 4 ablation "CT"; Khosla et al. 2020 (NeurIPS), Eq. 2.
    Shapes: state.rep (B, out_dim), state.batch.labels (B,) -> () float32.
    """

    def __init__(self, params: SupervisedContrastiveParams, ctx: BuildContext):
        super().__init__()
        self.p, self.task = params, ctx.task

    def forward(self, state: PipelineState) -> Tensor:
        y = state.batch.labels
        classes = regression_classes(y.float(), *self.p.label_range) if self.task == "regression" else y.long()
        with torch.autocast(device_type=state.rep.device.type, enabled=False):
            return supervised_contrastive_loss(state.rep.float(), classes, self.p.temperature)
