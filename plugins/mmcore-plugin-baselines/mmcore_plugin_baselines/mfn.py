"""Memory Fusion Network as one fuser (its LSTHMs inside), equal to MMSA 2.2.1's ``MFN``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.protocols import BuildContext, FuserOutput

from ._subnets import to_common_length
from .params import MFNParams


def _where(keep: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(keep.unsqueeze(-1), new, old)


class MFNFuser(nn.Module):
    r"""Memory Fusion Network: per-modality LSTMs, a Delta-memory attention over consecutive cell states,
    and a multi-view gated memory.

    $$c^{[t-1,t]} = [c_{t-1}; c_t],\quad a = \mathrm{softmax}(D_a(c^{[t-1,t]})),\quad
    \hat c = a \odot c^{[t-1,t]}$$
    $$\hat u_t = \tanh(D_u(\hat c)),\quad \gamma_1 = \sigma(D_{\gamma_1}([\hat c; u_{t-1}])),\quad
    \gamma_2 = \sigma(D_{\gamma_2}([\hat c; u_{t-1}])),\quad u_t = \gamma_1 \odot u_{t-1} + \gamma_2 \odot \hat u_t$$
    $$r = \mathrm{ReLU}(W_{out}\,[h^1_T; \dots; h^M_T; u_T])$$

    $c_t = [c^1_t; \dots; c^M_t]$ stacks the modalities' LSTM cell states, $u_t \in \mathbb R^{mem}$ is the
    memory, each $D$ a two-layer ReLU network with dropout. The output layer is the head ``mmsa_output``
    (MMSA ``out_fc2``, dropout ``outConfig.drop`` = 0).

    Reference: Zadeh et al., Memory Fusion Network for Multi-view Sequential Learning, AAAI 2018, §3, Eqs. 1–6;
    MMSA 2.2.1 ``MMSA/models/singleTask/MFN.py``.
    Notation: $D_a$ = ``att1_fc1/2``, $D_u$ = ``att2_fc1/2``, $D_{\gamma_1}$ = ``gamma1_fc1/2``,
    $D_{\gamma_2}$ = ``gamma2_fc1/2``, $W_{out}$ = ``out_fc1``; ``lstms[m]`` = MMSA ``lstm_l/a/v``; the
    stacking order is the spec's modality order (MMSA: text, audio, vision).
    Deviations: at a padded step (all modalities padded) states and memory are carried unchanged (MMSA keeps
    updating through the padding); identical on full-length rows. Modalities of different lengths are
    zero-padded to the longest (MMSA requires aligned data).
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, out_hidden).
    """

    def __init__(self, params: MFNParams, ctx: BuildContext, *, output_layer: bool = True):
        """``output_layer=False``: no $W_{out}$; ``memory_state`` is then the whole use (MFM's encoder)."""
        super().__init__()
        self.names = list(ctx.names)
        missing = [m for m in self.names if m not in params.hidden_dims]
        if missing:
            raise ValueError(f"hidden_dims has no entry for modalities {missing} (it has {sorted(params.hidden_dims)})")
        self.dims = [params.hidden_dims[m] for m in self.names]
        total, mem = sum(self.dims), params.mem_dim
        att_in = 2 * total  # MMSA windowsize = 2: [c_{t-1}; c_t]
        self.mem_dim = mem
        self.lstms = nn.ModuleDict({m: nn.LSTMCell(ctx.d_model, params.hidden_dims[m]) for m in self.names})
        self.att1_fc1, self.att1_fc2 = nn.Linear(att_in, params.att1_hidden), nn.Linear(params.att1_hidden, att_in)
        self.att1_dropout = nn.Dropout(params.att1_dropout)
        self.att2_fc1, self.att2_fc2 = nn.Linear(att_in, params.att2_hidden), nn.Linear(params.att2_hidden, mem)
        self.att2_dropout = nn.Dropout(params.att2_dropout)
        self.gamma1_fc1 = nn.Linear(att_in + mem, params.gamma1_hidden)
        self.gamma1_fc2 = nn.Linear(params.gamma1_hidden, mem)
        self.gamma1_dropout = nn.Dropout(params.gamma1_dropout)
        self.gamma2_fc1 = nn.Linear(att_in + mem, params.gamma2_hidden)
        self.gamma2_fc2 = nn.Linear(params.gamma2_hidden, mem)
        self.gamma2_dropout = nn.Dropout(params.gamma2_dropout)
        self.state_dim = total + mem
        if output_layer:
            self.out_fc1 = nn.Linear(total + mem, params.out_hidden)
        self.out_dim = params.out_hidden if output_layer else total + mem

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        return FuserOutput(F.relu(self.out_fc1(self.memory_state(seqs, valid))), {})

    def memory_state(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> Tensor:
        r"""$[h^1_T; \dots; h^M_T; u_T]$ (MMSA's ``'L'`` output): (B, Σ k_m + mem)."""
        xs, v = to_common_length(seqs, valid, self.names)  # M × (B, T, d), (B, T)
        B, T, _ = xs[0].shape
        new = lambda k: xs[0].new_zeros(B, k)  # noqa: E731
        h = [new(k) for k in self.dims]
        c = [new(k) for k in self.dims]
        mem = new(self.mem_dim)
        for t in range(T):
            keep = v[:, t]  # (B,) rows still inside their sequence
            steps = [self.lstms[m](xs[i][:, t], (h[i], c[i])) for i, m in enumerate(self.names)]
            c_star = torch.cat(c + [s[1] for s in steps], dim=1)  # (B, 2 Σ k_m)
            att = F.softmax(self.att1_fc2(self.att1_dropout(F.relu(self.att1_fc1(c_star)))), dim=1)
            attended = att * c_star
            c_hat = torch.tanh(self.att2_fc2(self.att2_dropout(F.relu(self.att2_fc1(attended)))))  # (B, mem)
            both = torch.cat([attended, mem], dim=1)
            g1 = torch.sigmoid(self.gamma1_fc2(self.gamma1_dropout(F.relu(self.gamma1_fc1(both)))))
            g2 = torch.sigmoid(self.gamma2_fc2(self.gamma2_dropout(F.relu(self.gamma2_fc1(both)))))
            mem = _where(keep, g1 * mem + g2 * c_hat, mem)
            h = [_where(keep, s[0], hi) for s, hi in zip(steps, h)]
            c = [_where(keep, s[1], ci) for s, ci in zip(steps, c)]
        return torch.cat(h + [mem], dim=1)  # (B, Σ k_m + mem)
