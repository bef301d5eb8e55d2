"""Early-fusion LSTM as one fuser, equal to MMSA 2.2.1's ``EF_LSTM``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.functional import zero_invalid
from mmcore.protocols import BuildContext, FuserOutput

from ._subnets import run_lstm, to_common_length
from .params import EFLSTMParams


class EFLSTMFuser(nn.Module):
    r"""Early fusion: concatenate the modalities step by step, normalise, read with a stacked LSTM.

    $$x_t = [x^1_t; \dots; x^M_t],\quad \tilde x = \mathrm{BN}_T(x),\quad
    h = \mathrm{LSTM}^{(L)}(\tilde x)_{T},\quad r = \mathrm{ReLU}(W\,\mathrm{drop}(h))$$

    $\mathrm{BN}_T$ is MMSA's ``BatchNorm1d(seq_len)`` on (B, T, Σd): one channel per *time step*,
    statistics over batch and features. $h$ is the top layer's final state. MMSA then applies the dropout
    again and the output layer: the head ``mmsa_output`` with ``dropout`` = this ``dropout``.

    Reference: MMSA 2.2.1 ``MMSA/models/singleTask/EF_LSTM.py`` (early-fusion LSTM baseline, e.g. Zadeh et al.,
    Tensor Fusion Network, EMNLP 2017, §5 "EF-LSTM").
    Notation: ``norm`` = BN_T over ``seq_len`` = the largest declared modality length; ``lstm``, ``linear`` as MMSA.
    Deviations: the LSTM stops at each row's last valid step (MMSA reads the padding too); identical on
    full-length rows. Modalities of different lengths are zero-padded to ``seq_len`` (MMSA requires aligned data).
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, hidden_dim).
    """

    def __init__(self, params: EFLSTMParams, ctx: BuildContext):
        super().__init__()
        self.names = list(ctx.names)
        self.seq_len = max(info.length for info in ctx.modalities.values())
        if self.seq_len < 1:
            raise ValueError("ef_lstm needs the modalities' lengths (its BatchNorm has one channel per step); "
                             "declare modalities.<name>.length or build with the dataset")
        self.norm = nn.BatchNorm1d(self.seq_len)
        self.lstm = nn.LSTM(len(self.names) * ctx.d_model, params.hidden_dim, num_layers=params.num_layers,
                            dropout=params.dropout if params.num_layers > 1 else 0.0, batch_first=True)
        self.dropout = nn.Dropout(params.dropout)
        self.linear = nn.Linear(params.hidden_dim, params.hidden_dim)
        self.out_dim = params.hidden_dim

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        xs, v = to_common_length(seqs, valid, self.names, self.seq_len)  # M × (B, T, d), (B, T)
        x = zero_invalid(self.norm(torch.cat(xs, dim=-1)), v)  # (B, T, M·d)
        h = run_lstm(self.lstm, x, v)[-1]  # (B, hidden)
        return FuserOutput(F.relu(self.linear(self.dropout(h))), {})
