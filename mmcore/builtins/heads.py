"""Built-in heads: MLP regression and classification."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..protocols import BuildContext
from .params import ClassificationHeadParams, RegressionHeadParams


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Module:
    if hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, d_out))
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


class RegressionMlpHead(nn.Module):
    r"""Scalar regression $\hat y = \mathrm{MLP}(r)$; task loss L1 (MMSA default), MSE or smooth-L1.

    Shapes: rep (B, d_in) -> pred (B,).
    """

    def __init__(self, params: RegressionHeadParams, ctx: BuildContext):
        super().__init__()
        self.mlp = _mlp(ctx.in_dim or ctx.d_model, params.hidden, 1, ctx.dropout)
        self.loss_name = params.loss

    def forward(self, rep: Tensor) -> Tensor:
        return self.mlp(rep).squeeze(-1)

    def loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        labels = labels.to(pred.dtype)
        if self.loss_name == "l1":
            return F.l1_loss(pred, labels)
        if self.loss_name == "mse":
            return F.mse_loss(pred, labels)
        return F.smooth_l1_loss(pred, labels)


class ClassificationMlpHead(nn.Module):
    r"""Class logits $\ell = \mathrm{MLP}(r)$ with cross-entropy $-\log \mathrm{softmax}(\ell)_y$.

    Shapes: rep (B, d_in) -> logits (B, C), C = ``ctx.num_outputs``.
    """

    def __init__(self, params: ClassificationHeadParams, ctx: BuildContext):
        super().__init__()
        if ctx.num_outputs < 2:
            raise ValueError(f"classification head needs >= 2 classes; the dataset has {ctx.num_outputs}")
        self.mlp = _mlp(ctx.in_dim or ctx.d_model, params.hidden, ctx.num_outputs, ctx.dropout)
        self.smoothing = params.label_smoothing

    def forward(self, rep: Tensor) -> Tensor:
        return self.mlp(rep)

    def loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(pred, labels.long(), label_smoothing=self.smoothing)
