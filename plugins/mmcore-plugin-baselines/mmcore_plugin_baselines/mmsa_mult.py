"""MMSA's Multimodal Transformer (``MULT``, non-BERT path) as one fuser, equal to MMSA 2.2.1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.functional import last_valid, zero_invalid
from mmcore.protocols import BuildContext, FuserOutput

from ._mult_transformer import TransformerEncoder
from .params import MmsaMultParams


def conv_valid(valid: Tensor, kernel: int) -> Tensor:
    """Valid mask after a length-``kernel`` convolution without padding: output i is valid while
    i < max(n - kernel + 1, 1), n the row's valid length (a row shorter than the kernel keeps one step,
    which reads zeros past its end). Shapes: (B, T) -> (B, max(T - kernel + 1, 1))."""
    n = valid.long().sum(1, keepdim=True)  # (B, 1)
    T_out = max(valid.shape[1] - kernel + 1, 1)
    keep = torch.maximum(n - kernel + 1, (n > 0).long())
    return torch.arange(T_out, device=valid.device).unsqueeze(0) < keep  # (B, T_out)


class MmsaMultFuser(nn.Module):
    r"""Multimodal Transformer: every modality attends to every other through cross-modal transformers,
    then to itself; the last step of each stream, a residual ReLU block, concatenated.

    $$\hat X_m = \mathrm{Conv1D}_{k_m}(\mathrm{drop}_m(X_m)),\qquad
    Z_{s\to t} = \mathrm{CM}^{(L)}_{s \to t}(\hat X_t, \hat X_s),\qquad
    H_t = \mathrm{SA}^{(L')}_t([Z_{s_1\to t}; \dots; Z_{s_{M-1}\to t}])$$
    $$h = [H_{t_1}[n_{t_1}]; \dots; H_{t_M}[n_{t_M}]],\qquad r = h + W_2\,\mathrm{drop}(\mathrm{ReLU}(W_1 h))$$

    $X_m$ (B, T_m, d) is modality m's sequence, $\mathrm{Conv1D}_{k}$ a bias-free temporal convolution to
    ``dst_dim`` channels (skipped when d = ``dst_dim``, as in MMSA), $\mathrm{CM}_{s\to t}$ MulT's cross-modal
    transformer (queries from t, keys and values from s, :class:`TransformerEncoder`), $\mathrm{SA}_t$ its
    self-attention transformer of width (M−1)·``dst_dim``, $H_t[n_t]$ the last valid step, r (B, M(M−1)·dst_dim).
    The output layer $\hat y = W_o r + b_o$ is the head ``mmsa_output`` (MMSA ``out_layer``, no dropout).

    Reference: Tsai et al., Multimodal Transformer for Unaligned Multimodal Language Sequences, ACL 2019, §3,
    Eqs. 1–4 and Fig. 2; MMSA 2.2.1 ``MMSA/models/singleTask/MULT.py`` (from yaohungt/Multimodal-Transformer).
    Notation: MMSA's ``proj_{l,a,v}`` = ``proj[m]``; ``trans_l_with_a`` (target l, source a) =
    ``cross["text_with_audio"]``; ``trans_l_mem`` = ``mem["text"]``; ``proj1``/``proj2`` keep their names;
    ``nlevels`` = ``layers``; ``dst_feature_dim_nheads`` = (``dst_dim``, ``heads``); the attention dropout of
    a cross-modal transformer is its *source* modality's (MMSA ``attn_dropout``/``_a``/``_v``).
    Deviations: padded keys are masked and the last step is each row's last valid one (MMSA attends to and
    reads its padding); the future mask's offset uses valid lengths; a row shorter than the kernel keeps one
    step. All vanish on full-length rows. With M ≠ 3 modalities each target has M−1 sources (MMSA: 3).
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, M(M−1)·dst_dim).
    """

    def __init__(self, params: MmsaMultParams, ctx: BuildContext):
        super().__init__()
        self.names = list(ctx.names)
        M, d, dst = len(self.names), ctx.d_model, params.dst_dim
        if M < 2:
            raise ValueError(f"mmsa_mult needs at least 2 modalities (cross-modal attention); got {self.names}")
        if dst % params.heads or ((M - 1) * dst) % params.heads:
            raise ValueError(f"heads={params.heads} must divide dst_dim={dst} and (M-1)·dst_dim={(M - 1) * dst}")
        self.kernels = {m: params.kernel_sizes.get(m, 1) for m in self.names}
        self.input_dropouts = {m: params.input_dropouts.get(m, 0.0) for m in self.names}
        self.project = d != dst  # MMSA: proj_x = x if orig_d == d else Conv1d(x)
        self.proj = nn.ModuleDict({m: nn.Conv1d(d, dst, kernel_size=self.kernels[m], padding=0, bias=False)
                                   for m in self.names} if self.project else {})
        net = dict(heads=params.heads, relu_dropout=params.relu_dropout, res_dropout=params.res_dropout,
                   embed_dropout=params.embed_dropout, future_mask=params.future_mask)
        self.cross = nn.ModuleDict({
            f"{t}_with_{s}": TransformerEncoder(dst, layers=params.layers,
                                                attn_dropout=params.attn_dropouts.get(s, 0.0), **net)
            for t in self.names for s in self.names if s != t})
        mem_layers = params.mem_layers if params.mem_layers is not None else max(params.layers, 3)
        self.mem = nn.ModuleDict({t: TransformerEncoder((M - 1) * dst, layers=mem_layers,
                                                        attn_dropout=params.mem_attn_dropout, **net)
                                  for t in self.names})
        combined = M * (M - 1) * dst
        self.proj1, self.proj2 = nn.Linear(combined, combined), nn.Linear(combined, combined)
        self.output_dropout = params.output_dropout
        self.out_dim = combined

    def _project(self, m: str, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        x = F.dropout(zero_invalid(x, valid), p=self.input_dropouts[m], training=self.training)  # (B, T, d)
        if not self.project:
            return x, valid
        k = self.kernels[m]
        x = F.pad(x, (0, 0, 0, max(k - x.shape[1], 0)))  # at least one output step
        x = self.proj[m](x.transpose(1, 2)).transpose(1, 2)  # (B, T - k + 1, dst)
        return x, conv_valid(valid, k)

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        xs, vs = {}, {}
        for m in self.names:
            xs[m], vs[m] = self._project(m, seqs[m], valid[m])
        last = []
        for t in self.names:
            zs = [self.cross[f"{t}_with_{s}"](xs[t], vs[t], xs[s], vs[s]) for s in self.names if s != t]
            h = self.mem[t](torch.cat(zs, dim=-1), vs[t])  # (B, T_t, (M-1) dst)
            last.append(last_valid(h, vs[t]))  # (B, (M-1) dst)
        h = torch.cat(last, dim=-1)  # (B, M (M-1) dst)
        r = h + self.proj2(F.dropout(F.relu(self.proj1(h)), p=self.output_dropout, training=self.training))
        return FuserOutput(r, {})
