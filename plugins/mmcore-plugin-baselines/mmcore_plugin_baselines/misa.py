"""MISA after its text encoder as one fuser, equal to MMSA 2.2.1's ``MISA`` given the same text features."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmcore.functional import lengths, masked_mean, zero_invalid
from mmcore.protocols import BuildContext, FuserOutput

from .misa_losses import cmd, difference_loss, reconstruction_loss
from .params import MISAParams


class _SequenceEncoder(nn.Module):
    """MISA's ``extract_features``: bi-LSTM, LayerNorm, bi-LSTM; the final states of both, both directions.

    Shapes: x (B, T, d), valid (B, T) -> (B, 4d) laid out [h1 fwd; h2 fwd; h1 bwd; h2 bwd] as MMSA's.
    """

    def __init__(self, d: int):
        super().__init__()
        self.rnn1 = nn.LSTM(d, d, bidirectional=True)
        self.rnn2 = nn.LSTM(2 * d, d, bidirectional=True)
        self.layer_norm = nn.LayerNorm(2 * d)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        B = x.shape[0]
        n = lengths(valid).clamp_min(1).cpu()  # a row without valid steps reads one zero step
        packed = pack_padded_sequence(zero_invalid(x, valid), n, batch_first=True, enforce_sorted=False)
        out1, (h1, _) = self.rnn1(packed)  # h1 (2, B, d)
        out1, _ = pad_packed_sequence(out1, batch_first=True)  # (B, max n, 2d)
        packed = pack_padded_sequence(self.layer_norm(out1), n, batch_first=True, enforce_sorted=False)
        _, (h2, _) = self.rnn2(packed)  # (2, B, d)
        return torch.cat((h1, h2), dim=2).permute(1, 0, 2).reshape(B, -1)  # (B, 4d)


def _projection(d_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.LayerNorm(hidden))


class MISAFuser(nn.Module):
    r"""MISA: every modality's utterance vector is projected, split into a private and a shared (invariant)
    code, and the 2M codes are fused by a one-layer transformer; three auxiliary losses shape the codes.

    $$u_m = \mathrm{LN}(\mathrm{ReLU}(W_m \bar x_m)),\quad h^p_m = \sigma(W^p_m u_m),\quad h^c_m = \sigma(W^c u_m),\quad
    [\tilde h_1; \dots; \tilde h_{2M}] = \mathrm{Transformer}(h^p_{1..M}, h^c_{1..M}),\quad
    r = \mathrm{ReLU}(\mathrm{drop}(W_f [\tilde h_1; \dots; \tilde h_{2M}]))$$
    $$\mathcal L_{diff} = \sum_m \mathcal D(h^p_m, h^c_m) + \sum_{i<j} \mathcal D(h^p_i, h^p_j),\quad
    \mathcal L_{sim} = \overline{\mathrm{CMD}_5(h^c_i, h^c_j)}_{i<j},\quad
    \mathcal L_{recon} = \overline{\mathrm{MSE}(W^r_m(h^p_m + h^c_m), u_m)}_m$$

    $\bar x_m$ is the valid-step mean for ``utterance_modalities`` (MMSA: the mean of the BERT output) and else
    MISA's bi-LSTM–LayerNorm–bi-LSTM final states (4d); the shared map $W^c$ is one for all modalities;
    $\mathcal D$ = :func:`difference_loss`, CMD = :func:`cmd`. The head ``mmsa_output`` (``loss: mse``, MMSA's
    criterion) is MMSA's ``fusion_layer_3``. Aux losses (MMSA's MOSI weights): ``misa_diff`` 0.1, ``misa_cmd``
    0.3, ``misa_recon`` 1.0.

    Reference: Hazarika et al., MISA, ACM MM 2020, §3.2–3.5, Eqs. 1–10; MMSA 2.2.1
    ``MMSA/models/singleTask/MISA.py`` (model) and ``trains/singleTask/MISA.py`` (losses, weights).
    Notation: MMSA ``project_t``/``private_t``/``shared``/``recon_t`` = ``project.text``/``private.text``/
    ``shared``/``recon.text``; ``vrnn1/2``, ``vlayer_norm`` = ``rnns.vision.rnn1/2``, ``.layer_norm``;
    ``transformer_encoder`` and ``fusion.fusion_layer_1`` keep their names.
    Deviations: no BERT (a text encoder is the pipeline's encoder; MMSA's MISA requires BERT); each modality's
    LSTM stops at its own valid length (MMSA uses the *text* lengths for audio and vision); the adversarial
    discriminator (``use_cmd_sim: false``) and ``sp_discriminator`` (computed but in no loss of MMSA's trainer)
    are not ported. The codes are stacked privates-then-shared in the spec's modality order (MMSA: t, v, a);
    ``mmsa_mapping`` permutes ``fusion_layer_1`` for it.
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, M·hidden), aux scalars.
    """

    def __init__(self, params: MISAParams, ctx: BuildContext):
        super().__init__()
        self.names, d, h = list(ctx.names), ctx.d_model, params.hidden_size
        M = len(self.names)
        if h % params.transformer_heads:
            raise ValueError(f"transformer_heads={params.transformer_heads} must divide hidden_size={h}")
        self.utterance = [m for m in self.names if m in params.utterance_modalities]
        self.rnns = nn.ModuleDict({m: _SequenceEncoder(d) for m in self.names if m not in self.utterance})
        self.project = nn.ModuleDict({m: _projection(d if m in self.utterance else 4 * d, h) for m in self.names})
        self.private = nn.ModuleDict({m: nn.Linear(h, h) for m in self.names})
        self.shared = nn.Linear(h, h)
        self.recon = nn.ModuleDict({m: nn.Linear(h, h) for m in self.names})
        layer = nn.TransformerEncoderLayer(d_model=h, nhead=params.transformer_heads,
                                           dim_feedforward=params.transformer_ff, dropout=params.transformer_dropout)
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fusion = nn.Sequential()
        self.fusion.add_module("fusion_layer_1", nn.Linear(2 * M * h, M * h))
        self.fusion.add_module("fusion_layer_1_dropout", nn.Dropout(params.dropout))
        self.fusion.add_module("fusion_layer_1_activation", nn.ReLU())
        self.cmd_moments = params.cmd_moments
        self.out_dim = M * h

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        u = {}
        for m in self.names:
            x = masked_mean(seqs[m], valid[m]) if m in self.utterance else self.rnns[m](seqs[m], valid[m])
            u[m] = self.project[m](x)  # (B, hidden)
        private = {m: torch.sigmoid(self.private[m](u[m])) for m in self.names}
        shared = {m: torch.sigmoid(self.shared(u[m])) for m in self.names}
        codes = torch.stack([private[m] for m in self.names] + [shared[m] for m in self.names], dim=0)  # (2M, B, h)
        fused = self.transformer_encoder(codes)  # (2M, B, h), sequence-first as MMSA's
        r = self.fusion(torch.cat(list(fused), dim=1))  # (B, M h)
        pairs = list(itertools.combinations(self.names, 2))
        diff = sum(difference_loss(private[m], shared[m]) for m in self.names)
        diff = diff + sum(difference_loss(private[a], private[b]) for a, b in pairs)
        sim = (sum(cmd(shared[a], shared[b], self.cmd_moments) for a, b in pairs) / len(pairs) if pairs
               else r.new_zeros(()))
        recon = sum(reconstruction_loss(self.recon[m](private[m] + shared[m]), u[m]) for m in self.names) / len(self.names)
        return FuserOutput(r, {"misa_diff": diff, "misa_cmd": sim, "misa_recon": recon})
