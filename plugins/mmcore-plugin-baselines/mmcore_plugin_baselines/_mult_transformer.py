r"""MMSA's MulT transformer (``MMSA/models/subNets/transformers_encoder``, from fairseq via Tsai et al.) with masks.

Why a private copy instead of ``torch.nn.TransformerEncoder``: MMSA's layer differs in ways that change the
numbers — inputs scaled by $\sqrt d$, pre-norm blocks whose keys and values share the query's LayerNorm,
a final LayerNorm, ReLU feed-forward of width 4d, and MulT's "future" mask with a length offset. The
parameter names are MMSA's (``layers.{i}.self_attn.in_proj_weight``, ``fc1``, ``layer_norms.{0,1}``,
``layer_norm``), so ``mmsa_mapping`` copies weights by key. Batch-first here; MMSA is time-first.

Deviations (both vanish on full-length rows, which is what MMSA feeds): padded keys are masked out
(MMSA attends to its zero padding), and the future mask's offset $|T_k - T_q|$ uses each row's valid
lengths instead of the padded tensor lengths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiheadAttention(nn.Module):
    r"""Scaled dot-product attention over $H$ heads: $\mathrm{softmax}(QK^\top/\sqrt{d_h} + \mathrm{mask})\,V$.

    Q, K, V come from one packed ``in_proj_weight`` (3d, d), as in MMSA (fairseq).
    Shapes: query (B, T_q, d), key/value (B, T_k, d), blocked (B, T_q, T_k) True = not attended -> (B, T_q, d).
    """

    def __init__(self, d: int, heads: int, attn_dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"heads={heads} must divide the attention width {d}")
        self.d, self.heads, self.attn_dropout = d, heads, attn_dropout
        self.scaling = (d // heads) ** -0.5
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.out_proj = nn.Linear(d, d)
        nn.init.xavier_uniform_(self.in_proj_weight)  # MMSA's reset_parameters
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, blocked: Tensor) -> Tensor:
        B, Tq, d = query.shape
        Tk, H = key.shape[1], self.heads
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(query, w[:d], b[:d]) * self.scaling  # (B, T_q, d)
        k = F.linear(key, w[d:2 * d], b[d:2 * d])  # (B, T_k, d)
        v = F.linear(value, w[2 * d:], b[2 * d:])
        q = q.reshape(B, Tq, H, d // H).transpose(1, 2)  # (B, H, T_q, d_h)
        k = k.reshape(B, Tk, H, d // H).transpose(1, 2)  # (B, H, T_k, d_h)
        v = v.reshape(B, Tk, H, d // H).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)).masked_fill(blocked.unsqueeze(1), float("-inf"))  # (B, H, T_q, T_k)
        att = F.dropout(F.softmax(att, dim=-1), p=self.attn_dropout, training=self.training)
        out = (att @ v).transpose(1, 2).reshape(B, Tq, d)  # (B, T_q, d)
        return self.out_proj(out)


class TransformerEncoderLayer(nn.Module):
    r"""One pre-norm MulT block: $z = x + \mathrm{MHA}(\mathrm{LN}_0 x, \mathrm{LN}_0 x_k, \mathrm{LN}_0 x_v)$,
    $y = z + W_2\,\mathrm{ReLU}(W_1 \mathrm{LN}_1 z)$ (dropouts after the attention, ReLU and W_2).

    Shapes: x (B, T_q, d), x_kv (B, T_k, d) or None (self-attention) -> (B, T_q, d).
    """

    def __init__(self, d: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float):
        super().__init__()
        self.self_attn = MultiheadAttention(d, heads, attn_dropout)
        self.relu_dropout, self.res_dropout = relu_dropout, res_dropout
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        for fc in (self.fc1, self.fc2):  # MMSA's Linear(): Xavier-uniform weight, zero bias
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        self.layer_norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(2)])

    def forward(self, x: Tensor, x_k: Tensor | None, x_v: Tensor | None, blocked: Tensor) -> Tensor:
        residual, q = x, self.layer_norms[0](x)
        if x_k is None:
            x = self.self_attn(q, q, q, blocked)
        else:
            x = self.self_attn(q, self.layer_norms[0](x_k), self.layer_norms[0](x_v), blocked)
        x = residual + F.dropout(x, p=self.res_dropout, training=self.training)
        residual = x
        x = F.relu(self.fc1(self.layer_norms[1](x)))
        x = self.fc2(F.dropout(x, p=self.relu_dropout, training=self.training))
        return residual + F.dropout(x, p=self.res_dropout, training=self.training)


def blocked_keys(valid_q: Tensor, valid_k: Tensor, future_mask: bool) -> Tensor:
    r"""Which keys each query may not see: padded keys, and (MulT's ``attn_mask``) keys after $i + |n_k - n_q|$.

    MMSA's ``buffered_future_mask`` blocks key j for query i when $j > i + |T_k - T_q|$ (padded lengths);
    here the offset uses each row's valid lengths $n$, so a row's output does not depend on its batch's padding.
    Key 0 is never blocked for a non-empty row, so no softmax row is empty.
    Shapes: valid_q (B, T_q), valid_k (B, T_k) -> (B, T_q, T_k) bool.
    """
    blocked = ~valid_k.unsqueeze(1).expand(-1, valid_q.shape[1], -1)  # (B, T_q, T_k)
    if future_mask:
        nq, nk = valid_q.long().sum(1), valid_k.long().sum(1)  # (B,)
        i = torch.arange(valid_q.shape[1], device=valid_q.device).view(1, -1, 1)
        j = torch.arange(valid_k.shape[1], device=valid_q.device).view(1, 1, -1)
        blocked = blocked | (j > i + (nk - nq).abs().view(-1, 1, 1))
    return blocked


class TransformerEncoder(nn.Module):
    r"""MMSA's ``TransformerEncoder`` without positions (MulT builds it with ``position_embedding=False``):

    $$x^{(0)} = \mathrm{drop}(\sqrt d\,x),\quad x^{(l)} = \mathrm{Layer}_l(x^{(l-1)}, \mathrm{drop}(\sqrt d\,x_k), \dots),
    \quad y = \mathrm{LN}(x^{(L)})$$

    Shapes: x (B, T_q, d), valid_q (B, T_q); x_kv (B, T_k, d), valid_k (B, T_k) or None -> (B, T_q, d).
    """

    def __init__(self, d: int, heads: int, layers: int, attn_dropout: float, relu_dropout: float,
                 res_dropout: float, embed_dropout: float, future_mask: bool):
        super().__init__()
        self.embed_scale, self.embed_dropout, self.future_mask = math.sqrt(d), embed_dropout, future_mask
        self.layers = nn.ModuleList([TransformerEncoderLayer(d, heads, attn_dropout, relu_dropout, res_dropout)
                                     for _ in range(layers)])
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, x: Tensor, valid_q: Tensor, x_kv: Tensor | None = None, valid_k: Tensor | None = None) -> Tensor:
        drop = lambda t: F.dropout(self.embed_scale * t, p=self.embed_dropout, training=self.training)  # noqa: E731
        x = drop(x)
        if x_kv is None:
            x_k = x_v = None
            blocked = blocked_keys(valid_q, valid_q, self.future_mask)
        else:
            x_k, x_v = drop(x_kv), drop(x_kv)  # MMSA draws the key and value dropouts separately
            blocked = blocked_keys(valid_q, valid_k, self.future_mask)
        for layer in self.layers:
            x = layer(x, x_k, x_v, blocked)
        return self.layer_norm(x)
