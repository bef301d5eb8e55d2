"""Built-in fusers: concat-pool, mean, and a MulT-style cross-modal transformer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional import pool, sinusoidal_positions, zero_invalid
from ..protocols import BuildContext, FuserOutput
from .params import ConcatPoolParams, MeanFuserParams, MulTParams


class ConcatPoolFuser(nn.Module):
    r"""Pool each stream over its valid tokens, concatenate, project (early-late fusion baseline).

    $$r = \mathrm{MLP}([\mathrm{pool}(X_1); \dots; \mathrm{pool}(X_M)])$$

    Shapes: seqs[m] (B, T_m, d) -> rep (B, d).
    """

    def __init__(self, params: ConcatPoolParams, ctx: BuildContext):
        super().__init__()
        self.pool_mode, self.streams = params.pool, list(ctx.modalities)
        d, hidden = ctx.d_model, params.hidden or 2 * ctx.d_model
        self.mlp = nn.Sequential(nn.Linear(len(self.streams) * d, hidden), nn.GELU(), nn.Dropout(ctx.dropout),
                                 nn.Linear(hidden, d))
        self.out_dim = d

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        pooled = [pool(seqs[m], valid[m], self.pool_mode) for m in self.streams]  # M x (B, d)
        return FuserOutput(self.mlp(torch.cat(pooled, -1)), {})


class MeanFuser(nn.Module):
    r"""Late fusion by averaging pooled streams: $r = \frac{1}{M}\sum_m \mathrm{pool}(X_m)$.

    Shapes: seqs[m] (B, T_m, d) -> rep (B, d).
    """

    def __init__(self, params: MeanFuserParams, ctx: BuildContext):
        super().__init__()
        self.pool_mode, self.streams, self.out_dim = params.pool, list(ctx.modalities), ctx.d_model
        self.norm = nn.LayerNorm(ctx.d_model)

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        pooled = torch.stack([pool(seqs[m], valid[m], self.pool_mode) for m in self.streams], 0)  # (M, B, d)
        return FuserOutput(self.norm(pooled.mean(0)), {})


class CrossModalBlock(nn.Module):
    r"""One pre-norm cross-modal attention block (MulT, Tsai et al. 2019, §3.2, Eq. 3):

    $$Z \leftarrow Z + \mathrm{MHA}(\mathrm{LN}(Z), \mathrm{LN}(X_s), \mathrm{LN}(X_s)),\quad
      Z \leftarrow Z + \mathrm{FFN}(\mathrm{LN}(Z))$$

    Shapes: target (B, T_t, d), source (B, T_s, d), source_valid (B, T_s) -> (B, T_t, d).

    Dropout acts in the feed-forward branch only: attention-probability dropout would force
    PyTorch's unfused attention path (materialised (B, heads, T_t, T_s) weights), several times
    slower on long sequences.
    """

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d))

    def forward(self, target: Tensor, source: Tensor, source_valid: Tensor) -> Tensor:
        kv = self.norm_kv(source)
        mask = self.padding_mask(source_valid, target.shape[1])
        z = target + self.attn(self.norm_q(target), kv, kv, attn_mask=mask, need_weights=False)[0]
        return z + self.ff(self.norm_ff(z))

    def padding_mask(self, source_valid: Tensor, t_target: int) -> Tensor:
        """``~source_valid`` as the (B·heads, T_t, T_s) ``attn_mask`` MHA takes (an expanded view, no copy).

        The same result bit for bit as ``key_padding_mask=~source_valid`` (tests/test_startup.py), whose
        shape check imports sympy in torch 2.13: 0.43 s CPU before the first batch (docs/performance.md)."""
        return (~source_valid).repeat_interleave(self.attn.num_heads, 0)[:, None, :].expand(-1, t_target, -1)


class MulTFuser(nn.Module):
    r"""Multimodal Transformer fuser (MulT, Tsai et al. 2019, ACL, §3): cross-modal attention from
    every source stream into every target stream, then self-attention, pooling, concatenation.

    For each target t: $Z_{s\to t} = \mathrm{CM}^{L}_{s\to t}(X_t, X_s)$ for s ≠ t,
    $Z_t = \mathrm{SA}^{L'}(W[Z_{s_1\to t}; \dots])$, $r = [\mathrm{pool}(Z_{t_1}); \dots; \mathrm{pool}(Z_{t_M})]$.

    Deviations: pre-norm blocks; sinusoidal positions added once before the cross-modal stacks; no
    attention-probability dropout (it forces the slow unfused attention path); with one stream only
    the self-attention stack runs.
    Shapes: seqs[m] (B, T_m, d) -> rep (B, M·d).
    """

    def __init__(self, params: MulTParams, ctx: BuildContext):
        super().__init__()
        d, self.streams, self.pool_mode = ctx.d_model, list(ctx.modalities), params.pool
        if d % params.heads:
            raise ValueError(f"mult fuser: heads={params.heads} must divide d_model={d}")
        M = len(self.streams)
        self.cross = nn.ModuleDict({
            f"{s}_to_{t}": nn.ModuleList(CrossModalBlock(d, params.heads, ctx.dropout) for _ in range(params.layers))
            for t in self.streams for s in self.streams if s != t})
        self.merge = nn.ModuleDict({t: nn.Linear(max(M - 1, 1) * d, d) for t in self.streams})
        self.self_attn = nn.ModuleDict({
            t: nn.ModuleList(CrossModalBlock(d, params.heads, ctx.dropout) for _ in range(params.self_layers))
            for t in self.streams})
        self.out_dim = M * d

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        seqs = {m: zero_invalid(seqs[m], valid[m]) for m in self.streams}  # padding holds nothing, even NaN
        pos = {m: seqs[m] + sinusoidal_positions(seqs[m].shape[1], seqs[m].shape[2], seqs[m].device, seqs[m].dtype)
               for m in self.streams}
        reps = []
        for t in self.streams:
            outs = []
            for s in self.streams:
                if s == t:
                    continue
                z = pos[t]
                for block in self.cross[f"{s}_to_{t}"]:
                    z = block(z, pos[s], valid[s])
                outs.append(z)  # (B, T_t, d)
            z = self.merge[t](torch.cat(outs, -1)) if outs else self.merge[t](pos[t])  # (B, T_t, d)
            for block in self.self_attn[t]:  # self-attention: the stream attends to itself
                z = block(z, z, valid[t])
            reps.append(pool(zero_invalid(z, valid[t]), valid[t], self.pool_mode))  # (B, d)
        return FuserOutput(torch.cat(reps, -1), {})
