"""Built-in per-modality encoders: raw (B, T, d_in) -> (B, T, d_model), padding ignored."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional import lengths, sinusoidal_positions, zero_invalid
from ..protocols import BuildContext
from .params import Conv1dParams, LinearParams, LSTMParams, TransformerParams


def _in_dim(ctx: BuildContext) -> int:
    if ctx.in_dim is None:
        raise ValueError("an encoder needs ctx.in_dim (the modality's feature size)")
    return ctx.in_dim


class LinearEncoder(nn.Module):
    r"""Per-token linear projection, optionally layer-normalised.

    $$h_t = \mathrm{LN}(W x_t + b)$$ with $x_t \in \mathbb{R}^{d_{in}}$, $h_t \in \mathbb{R}^{d}$.

    Shapes: x (B, T, d_in), valid (B, T) -> (B, T, d_model); padded positions are zero.
    """

    def __init__(self, params: LinearParams, ctx: BuildContext):
        super().__init__()
        self.proj = nn.Linear(_in_dim(ctx), ctx.d_model)
        self.norm = nn.LayerNorm(ctx.d_model) if params.layer_norm else nn.Identity()

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return zero_invalid(self.norm(self.proj(zero_invalid(x, valid))), valid)


class Conv1dEncoder(nn.Module):
    r"""Temporal convolution to d_model (MulT's 1-D conv input projection, Tsai et al. 2019, §3.1).

    $$h = \mathrm{Conv1D}_k(x)$$, same length; padded inputs are zeroed first so they cannot leak.

    Shapes: x (B, T, d_in), valid (B, T) -> (B, T, d_model).
    """

    def __init__(self, params: Conv1dParams, ctx: BuildContext):
        super().__init__()
        k, d = params.kernel_size, ctx.d_model
        convs = [nn.Conv1d(_in_dim(ctx), d, k, padding=k // 2)]
        convs += [nn.Conv1d(d, d, k, padding=k // 2) for _ in range(params.layers - 1)]
        self.convs = nn.ModuleList(convs)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = zero_invalid(x, valid).transpose(1, 2)  # (B, d_in, T)
        T = h.shape[-1]
        for i, conv in enumerate(self.convs):
            h = conv(h)[..., :T]
            h = zero_invalid(h.transpose(1, 2), valid).transpose(1, 2)  # re-zero padding: the next layer cannot see it
            if i < len(self.convs) - 1:
                h = torch.nn.functional.gelu(h)
        return h.transpose(1, 2)  # (B, T, d)


class LSTMEncoder(nn.Module):
    r"""(Bi)LSTM over each row's valid prefix (packed), projected to d_model.

    $$h_t = W[\overrightarrow{h}_t; \overleftarrow{h}_t] + b$$ (unidirectional: $h_t = W\overrightarrow{h}_t + b$)
    (Hochreiter & Schmidhuber 1997).

    Shapes: x (B, T, d_in), valid (B, T) -> (B, T, d_model).
    """

    def __init__(self, params: LSTMParams, ctx: BuildContext):
        super().__init__()
        self.lstm = nn.LSTM(_in_dim(ctx), ctx.d_model, num_layers=params.layers, batch_first=True,
                            bidirectional=params.bidirectional)
        self.proj = nn.Linear(ctx.d_model * (2 if params.bidirectional else 1), ctx.d_model)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        B, T, _ = x.shape
        lens = lengths(valid).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, d*dirs)
        return zero_invalid(self.proj(out), valid)


class TransformerEncoder(nn.Module):
    r"""Transformer encoder (Vaswani et al. 2017) with sinusoidal positions and key-padding masks.

    $$h = \mathrm{Enc}^{L}(W x + \mathrm{PE})$$

    Shapes: x (B, T, d_in), valid (B, T) -> (B, T, d_model).
    """

    def __init__(self, params: TransformerParams, ctx: BuildContext):
        super().__init__()
        if ctx.d_model % params.heads:
            raise ValueError(f"transformer encoder: heads={params.heads} must divide d_model={ctx.d_model}")
        self.proj = nn.Linear(_in_dim(ctx), ctx.d_model)
        layer = nn.TransformerEncoderLayer(ctx.d_model, params.heads, params.ff_mult * ctx.d_model,
                                           dropout=ctx.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, params.layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        B, T, _ = x.shape
        h = self.proj(zero_invalid(x, valid)) + sinusoidal_positions(T, self.proj.out_features, x.device, x.dtype)
        h = self.encoder(h, src_key_padding_mask=~valid)
        return zero_invalid(h, valid)
