"""MMSA's pre-fusion sub-networks (``MMSA/models/subNets/FeatureNets.py``) and sequence helpers.

Why a private module: TFN, LMF and LF-DNN share MMSA's ``SubNet`` (time-averaged features) and
``TextSubNet`` (LSTM); one copy here keeps their parameter names identical to MMSA's, which is what
the state-dict mappings in ``mmsa_mapping.py`` rely on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from mmcore.functional import lengths, masked_mean, zero_invalid
from mmcore.protocols import BuildContext, FuserOutput


class SubNet(nn.Module):
    r"""MMSA's ``SubNet``: $y = \mathrm{ReLU}(W_3\,\mathrm{ReLU}(W_2\,\mathrm{ReLU}(W_1\,\mathrm{drop}(\mathrm{BN}(\bar x)))))$.

    $\bar x$ is the mean over the valid time steps (MMSA averages the features in its data loader,
    ``need_normalized``). Deviations: MMSA divides by the padded length (padding counts as zeros);
    here only valid steps count — the same on full-length sequences such as ICT-MMMO's.

    Shapes: x (B, T, d_in), valid (B, T) -> (B, hidden).
    """

    def __init__(self, in_size: int, hidden_size: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_size)
        self.drop = nn.Dropout(p=dropout)
        self.linear_1 = nn.Linear(in_size, hidden_size)
        self.linear_2 = nn.Linear(hidden_size, hidden_size)
        self.linear_3 = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = self.drop(self.norm(masked_mean(x, valid)))  # (B, d_in)
        h = F.relu(self.linear_1(h))
        h = F.relu(self.linear_2(h))
        return F.relu(self.linear_3(h))  # (B, hidden)


def run_lstm(lstm: nn.LSTM, x: Tensor, valid: Tensor) -> Tensor:
    """Final hidden state of every layer after each row's last valid step: (B, T, d) -> (layers, B, hidden).

    Why packing: MMSA runs its LSTMs through the zero padding too, so its final state depends on how
    much padding a batch has; packed, it does not (identical on full-length rows). A row without any
    valid step gets the zero state.
    """
    n = lengths(valid)  # (B,)
    packed = pack_padded_sequence(zero_invalid(x, valid), n.clamp_min(1).cpu(), batch_first=True,
                                  enforce_sorted=False)
    _, (h, _) = lstm(packed)  # (layers, B, hidden)
    return torch.where((n > 0).view(1, -1, 1), h, torch.zeros((), dtype=h.dtype, device=h.device))


class TextSubNet(nn.Module):
    r"""MMSA's ``TextSubNet``: $y = W\,\mathrm{drop}(h_T)$ with $h_T$ the final LSTM state.

    MMSA sets the dropout to 0 for its 1-layer LSTM, so the modality's dropout is inert here too.

    Shapes: x (B, T, d_in), valid (B, T) -> (B, out).
    """

    def __init__(self, in_size: int, hidden_size: int, out_size: int, num_layers: int = 1, dropout: float = 0.2):
        super().__init__()
        if num_layers == 1:
            dropout = 0.0
        self.rnn = nn.LSTM(in_size, hidden_size, num_layers=num_layers, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.linear_1 = nn.Linear(hidden_size, out_size)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = run_lstm(self.rnn, x, valid)[-1]  # (B, hidden)
        return self.linear_1(self.dropout(h))


def subnets(params, ctx: BuildContext, out_of_lstm) -> tuple[nn.ModuleDict, dict[str, int]]:
    """One MMSA sub-network per modality of ``ctx`` (fuser inputs are d_model wide); returns them and their widths.

    ``out_of_lstm(hidden)``: the TextSubNet output size (TFN/LF-DNN: ``lstm_out``; LMF: hidden // 2).
    """
    nets, widths = nn.ModuleDict(), {}
    missing = [m for m in ctx.names if m not in params.hidden_dims]
    if missing:
        raise ValueError(f"hidden_dims has no entry for modalities {missing} (it has {sorted(params.hidden_dims)}); "
                         "add one per modality of the spec")
    for m in ctx.names:
        hidden, p = params.hidden_dims[m], params.dropouts.get(m, 0.0)
        if m in params.sequence_modalities:
            widths[m] = out_of_lstm(hidden)
            nets[m] = TextSubNet(ctx.d_model, hidden, widths[m], dropout=p)
        else:
            widths[m] = hidden
            nets[m] = SubNet(ctx.d_model, hidden, p)
    return nets, widths


class PostFusionFuser(nn.Module):
    r"""TFN and LF-DNN: a sub-network per modality, a fusion $z$ of their outputs, then MMSA's two post-fusion
    ReLU layers $r = \mathrm{ReLU}(W_2\,\mathrm{ReLU}(W_1\,\mathrm{drop}(z)))$ (the head ``mmsa_output`` is $W_3$).

    A subclass defines the fusion: ``fused_width(widths)`` and ``fuse(h)``. The layers keep MMSA's names
    (``post_fusion_layer_1/2``), which the state-dict mappings in ``mmsa_mapping.py`` rely on.
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, post_fusion_dim).
    """

    def __init__(self, params, ctx: BuildContext):
        super().__init__()
        self.names = list(ctx.names)
        self.subnets, widths = subnets(params, ctx, lambda hidden: params.lstm_out)
        self.post_fusion_dropout = nn.Dropout(params.post_fusion_dropout)
        self.post_fusion_layer_1 = nn.Linear(self.fused_width(widths), params.post_fusion_dim)
        self.post_fusion_layer_2 = nn.Linear(params.post_fusion_dim, params.post_fusion_dim)
        self.out_dim = params.post_fusion_dim

    def fused_width(self, widths: dict[str, int]) -> int:
        """Width of the fusion of sub-network outputs of ``widths[m]`` features each."""
        raise NotImplementedError

    def fuse(self, h: list[Tensor]) -> Tensor:
        """The sub-network outputs, (B, k_m) each in ``names`` order -> z (B, fused_width)."""
        raise NotImplementedError

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        z = self.fuse([self.subnets[m](seqs[m], valid[m]) for m in self.names])
        r = F.relu(self.post_fusion_layer_1(self.post_fusion_dropout(z)))
        return FuserOutput(F.relu(self.post_fusion_layer_2(r)), {})  # (B, post_fusion_dim)


def to_common_length(seqs: dict[str, Tensor], valid: dict[str, Tensor], names: list[str],
                     T: int | None = None) -> tuple[list[Tensor], Tensor]:
    """Zero-pad every modality to one length and return them with the union of their valid masks.

    Why: EF-LSTM and MFN read the modalities step by step together (MMSA requires word-aligned data,
    ``need_data_aligned``). On aligned data the lengths already agree; otherwise shorter modalities read
    as zeros after their end.

    Shapes: seqs[m] (B, T_m, d) -> list of (B, T, d), valid (B, T).
    """
    T = T if T is not None else max(seqs[m].shape[1] for m in names)
    out, any_valid = [], None
    for m in names:
        x, v = zero_invalid(seqs[m], valid[m]), valid[m]
        pad = T - x.shape[1]
        if pad < 0:
            raise ValueError(f"{m} has {x.shape[1]} steps but the model was built for at most {T}; declare the "
                             "modality's length (modalities.<name>.length) or use an aligner")
        x, v = F.pad(x, (0, 0, 0, pad)), F.pad(v, (0, pad))  # (B, T, d), (B, T)
        out.append(x)
        any_valid = v if any_valid is None else any_valid | v
    return out, any_valid
