r"""MGMR-Net's Mamba-enhanced reconstruction module as an mmcore imputer (``mamba_reconstruction``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.batch import Batch
from mmcore.functional import zero_invalid
from mmcore.protocols import BuildContext, ImputerOutput
from mmcore_plugin_mamba.stack import BiMambaStack, MambaStack

from .losses import masked_smooth_l1
from .params import MambaReconstructionParams

__all__ = ["MambaReconstructionImputer", "ModalityReconstruction"]


class ModalityReconstruction(nn.Module):
    r"""One modality's reconstruction, gate, fusion, projection and read-out to raw features.

    $$\hat X = \mathrm{Stack}(X),\quad \Gamma = \sigma(W_g\,\mathrm{LN}_g(X)),\quad
      \bar X = \Gamma \odot X + (1-\Gamma) \odot \hat X,\quad Y = W_{proj}\,\mathrm{ReLU}(\mathrm{LN}_p(\bar X)),
      \quad \hat I = W_r \hat X + b_r$$

    Stack is the Mamba plugin's :class:`~mmcore_plugin_mamba.stack.MambaStack` (pre-norm residual layers,
    final LayerNorm) or, with ``bidirectional``, its :class:`~mmcore_plugin_mamba.stack.BiMambaStack`.
    Shapes: x (B, T, d), valid (B, T) -> y (B, T, d), gate (B, T, 1 or d), x_hat (B, T, d), raw (B, T, d_m).
    """

    def __init__(self, d: int, raw_dim: int, p: MambaReconstructionParams, dropout: float = 0.0):
        super().__init__()
        kw = dict(d_state=p.d_state, d_conv=p.d_conv, expand=p.expand, backend=p.backend, dropout=dropout)
        self.reconstruct = BiMambaStack(d, p.depth, **kw) if p.bidirectional else MambaStack(d, p.depth, **kw)
        self.gate_norm = nn.LayerNorm(d)
        # no bias, as Γ = σ(W_g · LN(X)): the LayerNorm's own shift β gives the constant term W_g·β
        self.gate = nn.Linear(d, 1 if p.gate == "vector" else d, bias=False)
        self.out_norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, d, bias=False)  # W_proj, "a learnable projection matrix"
        self.readout = nn.Linear(d, raw_dim)  # W_r: not in the paper, maps X̂ onto the raw feature space

    def forward(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x_hat = self.reconstruct(x, valid)  # (B, T, d)
        gamma = torch.sigmoid(self.gate(self.gate_norm(x)))  # (B, T, 1) or (B, T, d)
        fused = gamma * x + (1.0 - gamma) * x_hat  # (B, T, d)
        y = self.proj(F.relu(self.out_norm(fused)))  # (B, T, d)
        return y.masked_fill(~valid.unsqueeze(-1), 0.0), gamma, x_hat, self.readout(x_hat)  # raw: (B, T, d_m)


class MambaReconstructionImputer(nn.Module):
    r"""Gated Mamba reconstruction of every modality's encoded sequence, with a masked reconstruction loss.

    For each modality m with encoded sequence $X_m \in \mathbb{R}^{T_m \times d}$ (masked tokens
    encoded from zeros, or from the unknown-token vector for text):

    $$\hat X_m = \mathrm{MambaLayer}^{(N)} \circ \dots \circ \mathrm{MambaLayer}^{(1)}(X_m)$$
    $$\Gamma_m = \sigma\big(W_g \cdot \mathrm{LayerNorm}(X_m)\big)$$
    $$X'_m = \Gamma_m \odot X_m + (1 - \Gamma_m) \odot \hat X_m,\qquad
      Y_m = W_{proj} \cdot \mathrm{ReLU}\big(\mathrm{LayerNorm}(X'_m)\big)$$
    $$\mathcal{L}_{recon} = \sum_m \alpha_m \frac{1}{B} \sum_b \frac{1}{L_m d_m} \sum_{t,k} M_{m,b,t}\,
      \mathrm{SmoothL1}_\beta\big((W_r \hat X_m + b_r)_{b,t,k},\ I_{m,b,t,k}\big)$$

    where $I_m$ are the clean raw features (``batch.clean[m]``, before the temporal-masking protocol,
    standardised as the model sees them), $M_m$ = ``batch.masked[m]`` ∧ ``valid`` ∧ ¬``missing`` (the
    masked tokens of present rows), $L_m$ the declared length and $d_m$ the raw feature size. $Y_m$ goes
    on to the aligner and fuser; $\mathcal{L}_{recon}$ is returned as the aux loss ``recon``.

    Reference: MGMR-Net (Yang et al., Electronics 2025, 14(15):3088), §3.4 (reconstruction, gate, fusion,
    projection) and §3.5 ($L_{rec}(m)$, $L = L_{task} + \sum_m \alpha_m L_{rec}(m)$); masking protocol §4.4.
    Notation: $X_m$ ``seqs[m]``; $\hat X_m$ ``branches[m].reconstruct(x, valid)``; $\Gamma_m$ ``gates()[m]``;
    $W_g$ ``branches[m].gate.weight``; $W_{proj}$ ``branches[m].proj.weight``; $W_r$ ``branches[m].readout``;
    $\alpha_m$ ``params.alpha``; Mask = $M_m$; N = ``depth``.
    Deviations: (1) the paper applies the loss to "the outputs of the reconstruction module" against the
    complete features $I_m$ without saying how a d-wide reconstruction meets a $d_m$-wide raw feature; here a
    linear read-out $W_r$ maps $\hat X_m$ to raw features and the target is the clean input (fixed targets:
    no collapse, as reconstructing the encoder's own output would allow). (2) The layers are pre-norm residual
    with a final LayerNorm (the Mamba plugin's ``MambaStack``, mamba-ssm's layout; dropout = ``model.dropout``
    on each residual branch) — the paper writes the bare MambaLayer.
    (3) The per-row sum is divided by the constant $L_m d_m$ (rescales α only). (4) Rows whose whole modality
    is missing are excluded from the loss: the reconstruction is intra-modal, so they have no context.
    (5) ``bidirectional`` (default off) and ``gate: matrix`` are options, not the paper's.
    Shapes: seqs[m] (B, T_m, d) -> seqs[m] (B, T_m, d), zero at padded positions; aux {"recon": ()}.

    Raises:
        ValueError: a modality the imputer was not built for, or a sequence/target of the wrong shape.
    """

    def __init__(self, params: MambaReconstructionParams, ctx: BuildContext):
        super().__init__()
        self.params = params
        self.d_model = ctx.d_model
        self.raw_dims = {m: info.dim for m, info in ctx.modalities.items()}
        self.loss_norms = {m: float(info.length * info.dim) for m, info in ctx.modalities.items()}  # L_m d_m
        self.branches = nn.ModuleDict({m: ModalityReconstruction(ctx.d_model, info.dim, params, ctx.dropout)
                                       for m, info in ctx.modalities.items()})
        self._gates: dict[str, Tensor] = {}

    def forward(self, seqs: dict[str, Tensor], batch: Batch) -> ImputerOutput:
        out: dict[str, Tensor] = {}
        recon = None
        for m, x in seqs.items():
            self._check(m, x, batch)
            valid = batch.valid[m]  # (B, T)
            x = zero_invalid(x, valid)  # padding holds nothing, not even NaN: selected away before any arithmetic
            y, gamma, _, raw = self.branches[m](x, valid)
            out[m] = y
            self._gates[m] = gamma.detach()
            region = batch.masked[m] & valid & ~batch.missing[m].unsqueeze(1)  # (B, T)
            target = batch.clean[m].to(raw.dtype)  # (B, T, d_m)
            per_row = masked_smooth_l1(raw, target, region, beta=self.params.beta, norm=self.loss_norms[m])  # (B,)
            # a batch mean of per-row terms: under DDP the trainer's row-share weighting makes it exact
            term = self.params.alpha_of(m) * per_row.mean()
            recon = term if recon is None else recon + term
        return ImputerOutput(out, {} if recon is None else {"recon": recon})

    def gates(self) -> dict[str, Tensor]:
        """{modality: Γ (B, T, 1 or d)} of the most recent forward, detached (for analysis and plots)."""
        return dict(self._gates)

    def _check(self, m: str, x: Tensor, batch: Batch) -> None:
        if m not in self.branches:
            raise ValueError(f"mamba_reconstruction: got modality {m!r} but was built for "
                             f"{', '.join(self.branches)}")
        B, T = batch.valid[m].shape
        if x.shape != (B, T, self.d_model):
            raise ValueError(f"mamba_reconstruction: seqs[{m!r}] must be (B, T, d_model)=({B}, {T}, {self.d_model}); "
                             f"got {tuple(x.shape)}")
        want = (B, T, self.raw_dims[m])
        if tuple(batch.clean[m].shape) != want:
            raise ValueError(f"mamba_reconstruction: batch.clean[{m!r}] must be (B, T, d_m)={want} (d_m from the "
                             f"spec's modalities); got {tuple(batch.clean[m].shape)}")
