"""Multimodal Factorization Model as one fuser (MFN encoder, factor encoders, decoders), equal to MMSA 2.2.1's ``MFM``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.functional import zero_invalid
from mmcore.protocols import BuildContext, FuserOutput

from .mfn import MFNFuser
from .params import MFMParams, MFNParams


def prior_mmd(z: Tensor, prior: Tensor) -> Tensor:
    r"""MMD between codes and samples of the prior $\mathcal N(0, I)$ with MFM's Gaussian kernel.

    $$\mathrm{MMD}(z, \epsilon) = \overline{k(\epsilon, \epsilon)} + \overline{k(z, z)} - 2\,\overline{k(\epsilon, z)},\qquad
    k(x, y) = \exp\!\big(-\tfrac{1}{d^2}\textstyle\sum_{j=1}^{d} (x_j - y_j)^2\big)$$

    $\overline{k(x, y)}$ is the mean over all pairs of rows; the bandwidth is MMSA's (``mean`` over the d
    features, then divided by d again). Reference: Tsai et al., MFM, ICLR 2019, §3 (MMD as in InfoVAE,
    Zhao et al. 2017); MMSA ``models/singleTask/MFM.py`` ``compute_kernel``/``loss_MMD``.
    Shapes: z (B, d), prior (B', d) -> () .
    """
    def k(x: Tensor, y: Tensor) -> Tensor:
        d = x.shape[1]
        return torch.exp(-(x.unsqueeze(1) - y.unsqueeze(0)).pow(2).mean(2) / float(d))  # (n_x, n_y)

    return k(prior, prior).mean() + k(z, z).mean() - 2.0 * k(prior, z).mean()


def _lstm_cells(cell: nn.LSTMCell, xs: Tensor, valid: Tensor) -> Tensor:
    """Final hidden state of an LSTMCell run over each row's valid steps: (B, T, d) -> (B, h)."""
    B, T, _ = xs.shape
    h = xs.new_zeros(B, cell.hidden_size)
    c = xs.new_zeros(B, cell.hidden_size)
    for t in range(T):
        h1, c1 = cell(xs[:, t], (h, c))
        keep = valid[:, t].unsqueeze(-1)  # (B, 1)
        h, c = torch.where(keep, h1, h), torch.where(keep, c1, c)
    return h


class _Encoder(nn.Module):
    """MMSA's ``encoderLSTM``: z_m = W h_T (LSTMCell). Shapes: (B, T, d) -> (B, z_m)."""

    def __init__(self, d: int, h: int):
        super().__init__()
        self.lstm, self.fc1 = nn.LSTMCell(d, h), nn.Linear(h, h)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return self.fc1(_lstm_cells(self.lstm, x, valid))


class _Decoder(nn.Module):
    """MMSA's ``decoderLSTM``: an LSTMCell fed the code, then its own state; W maps each state to d.

    Shapes: code (B, h), T -> (B, T, d).
    """

    def __init__(self, h: int, d: int):
        super().__init__()
        self.lstm, self.fc1 = nn.LSTMCell(h, h), nn.Linear(h, d)

    def forward(self, code: Tensor, T: int) -> Tensor:
        h = c = torch.zeros_like(code)
        states, x = [], code
        for _ in range(T):
            h, c = self.lstm(x, (h, c))
            states.append(h)
            x = h
        return self.fc1(torch.stack(states, dim=1))  # (B, T, d)


class MFMFuser(nn.Module):
    r"""Multimodal Factorization Model: a discriminative factor from MFN, generative factors per modality,
    decoders that reconstruct each modality from both.

    $$z_y = W_{zy}\,\mathrm{MFN}(X_{1:M}),\quad z_m = \mathrm{Enc}_m(X_m),\quad
    F_y = \mathrm{MLP}_y(z_y),\quad F_m = \mathrm{MLP}_m(z_m),\quad \hat X_m = \mathrm{Dec}_m([F_y; F_m])$$
    $$r = \mathrm{ReLU}(W_1 F_y),\quad
    \mathcal L_{rec} = \sum_m \lambda_m \lVert \hat X_m - X_m \rVert^2_{\text{mean}},\quad
    \mathcal L_{mmd} = \sum_{m} \mathrm{MMD}(z_m, \epsilon_m) + \mathrm{MMD}(z_y, \epsilon_y),\ \epsilon \sim \mathcal N(0, I)$$

    $\mathrm{MFN}$ is :class:`MFNFuser`'s state $[h^1_T; \dots; h^M_T; u_T]$; each MLP is
    Linear–ReLU–Dropout–Linear–ReLU; $\mathrm{Enc}_m$ an LSTM whose last state goes through a linear layer;
    $\mathrm{Dec}_m$ an LSTM fed $[F_y; F_m]$ then its own output, one linear map per step. The prediction
    $\hat y = W_2\,\mathrm{drop}(r)$ is the head ``mmsa_output`` (MMSA ``fy_to_y_fc2``). Aux losses:
    ``mfm_reconstruction`` ($\mathcal L_{rec}$, weight 1 as MMSA's trainer adds it) and ``mfm_mmd``
    ($\mathcal L_{mmd}$, weight MMSA's ``lda_mmd`` = 100), the prior samples drawn from torch's global generator
    (which the trainer seeds), in the order of the modalities then $z_y$, as MMSA does.

    Reference: Tsai et al., Learning Factorized Multimodal Representations, ICLR 2019, §2–3, Eq. 4 (the
    Wasserstein-autoencoder objective with an MMD prior term); MMSA 2.2.1 ``MMSA/models/singleTask/MFM.py``.
    Notation: $z_y$, $z_{a,v,l}$, $F_y$, $F_{a,v,l}$ as the paper's; MMSA ``encoder_l`` = ``encoders["text"]``,
    ``decoder_l`` = ``decoders["text"]``, ``zl_to_fl_fc1/2`` = ``z_to_f["text"].fc1/2``, ``mfn_encoder`` =
    ``mfn``; $\lambda_m$ = ``recon_weights`` (MMSA ``lda_xl/xa/xv``).
    Deviations: encoders, MFN and losses stop at each row's last valid step and average the reconstruction error
    over valid steps (MMSA reads its padding and averages over it); each modality is decoded to its own length
    (MMSA: the text length, its data being aligned); with ``detach_targets`` (default) the targets are constants,
    as MMSA's raw features are. All equal on full-length rows.
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, fy_size), aux scalars.
    """

    def __init__(self, params: MFMParams, ctx: BuildContext):
        super().__init__()
        self.names, d = list(ctx.names), ctx.d_model
        for field in ("hidden_dims", "z_sizes", "f_sizes"):
            missing = [m for m in self.names if m not in getattr(params, field)]
            if missing:
                raise ValueError(f"{field} has no entry for modalities {missing} (it has "
                                 f"{sorted(getattr(params, field))}); add one per modality of the spec")
        mfn = MFNParams(**{k: getattr(params, k) for k in MFNParams.model_fields if k in MFMParams.model_fields})
        self.mfn = MFNFuser(mfn, ctx, output_layer=False)
        self.encoders = nn.ModuleDict({m: _Encoder(d, params.z_sizes[m]) for m in self.names})
        self.decoders = nn.ModuleDict({m: _Decoder(params.fy_size + params.f_sizes[m], d) for m in self.names})
        self.last_to_zy_fc1 = nn.Linear(self.mfn.state_dim, params.zy_size)
        self.zy_to_fy_fc1 = nn.Linear(params.zy_size, params.fy_size)
        self.zy_to_fy_fc2 = nn.Linear(params.fy_size, params.fy_size)
        self.zy_to_fy_dropout = nn.Dropout(params.fy_dropout)
        self.z_to_f = nn.ModuleDict({m: nn.ModuleDict({"fc1": nn.Linear(params.z_sizes[m], params.f_sizes[m]),
                                                       "fc2": nn.Linear(params.f_sizes[m], params.f_sizes[m]),
                                                       "dropout": nn.Dropout(params.f_dropouts.get(m, 0.0))})
                                     for m in self.names})
        self.fy_to_y_fc1 = nn.Linear(params.fy_size, params.fy_size)
        self.recon_weights = {m: params.recon_weights.get(m, 1.0) for m in self.names}
        self.detach_targets = params.detach_targets
        self.out_dim = params.fy_size

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        xs = {m: zero_invalid(seqs[m], valid[m]) for m in self.names}  # padding holds nothing, even NaN
        z = {m: self.encoders[m](xs[m], valid[m]) for m in self.names}  # (B, z_m)
        zy = self.last_to_zy_fc1(self.mfn.memory_state(xs, valid))  # (B, zy)
        mmd = sum(prior_mmd(z[m], torch.randn(z[m].shape, dtype=z[m].dtype, device=z[m].device))
                  for m in self.names)
        mmd = mmd + prior_mmd(zy, torch.randn(zy.shape, dtype=zy.dtype, device=zy.device))
        fy = F.relu(self.zy_to_fy_fc2(self.zy_to_fy_dropout(F.relu(self.zy_to_fy_fc1(zy)))))  # (B, fy)
        recon = 0.0
        for m in self.names:
            mlp = self.z_to_f[m]
            fm = F.relu(mlp["fc2"](mlp["dropout"](F.relu(mlp["fc1"](z[m])))))  # (B, f_m)
            x_hat = self.decoders[m](torch.cat([fy, fm], dim=1), xs[m].shape[1])  # (B, T_m, d)
            target = xs[m].detach() if self.detach_targets else xs[m]
            err = zero_invalid(x_hat - target, valid[m]).pow(2).sum()
            recon = recon + self.recon_weights[m] * err / (valid[m].sum() * x_hat.shape[-1]).clamp_min(1)
        r = F.relu(self.fy_to_y_fc1(fy))  # (B, fy); the head's dropout and fy_to_y_fc2 follow
        return FuserOutput(r, {"mfm_reconstruction": recon, "mfm_mmd": mmd})
