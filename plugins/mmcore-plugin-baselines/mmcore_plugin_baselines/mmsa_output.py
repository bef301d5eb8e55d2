"""The output layer MMSA's models end with, as a head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.protocols import BuildContext

from .params import MmsaOutputParams


class MmsaOutputHead(nn.Module):
    r"""MMSA's last layer: $\hat y = W\,\mathrm{drop}(r) + b$, optionally squashed to a range.

    $$\hat y = \mathrm{lo} + (\mathrm{hi} - \mathrm{lo})\,\sigma(W\,\mathrm{drop}(r) + b)\quad\text{(``output_range``, TFN)}$$

    Task loss: L1 (MMSA's ``nn.L1Loss``) or MSE for regression; cross-entropy for classification.
    With ``linear: false`` the representation is the prediction (LMF).

    Reference: MMSA 2.2.1 ``post_fusion_layer_3`` (TFN, LF-DNN), ``out`` (EF-LSTM), ``out_fc2`` (MFN);
    TFN's squashing: Zadeh et al., EMNLP 2017, MMSA ``TFN.output_range/output_shift``.
    Shapes: rep (B, in) -> pred (B,) for regression, (B, C) logits for classification.
    """

    def __init__(self, params: MmsaOutputParams, ctx: BuildContext):
        super().__init__()
        d_in = ctx.in_dim or ctx.d_model
        self.classify = ctx.task == "classification"
        out = ctx.num_outputs if self.classify else 1
        if not params.linear and d_in != out:
            raise ValueError(f"linear: false needs the fuser's output to be the prediction ({out} wide), "
                             f"but it is {d_in} wide; set linear: true or the fuser's output_dim: {out}")
        self.dropout = nn.Dropout(params.dropout)
        self.linear = nn.Linear(d_in, out) if params.linear else nn.Identity()
        self.output_range = None if self.classify else params.output_range
        self.loss_name = params.loss

    def forward(self, rep: Tensor) -> Tensor:
        z = self.linear(self.dropout(rep))  # (B, out)
        if self.classify:
            return z
        if self.output_range is not None:
            lo, hi = self.output_range
            z = torch.sigmoid(z) * (hi - lo) + lo
        return z.squeeze(-1)  # (B,)

    def loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        if self.classify:
            return F.cross_entropy(pred, labels.long())
        labels = labels.to(pred.dtype)
        return F.l1_loss(pred, labels) if self.loss_name == "l1" else F.mse_loss(pred, labels)
