"""Masked sequence operations shared by components (torch).

``valid`` masks are (B, T) bool with True on real tokens, which form a prefix of each row.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def zero_invalid(x: Tensor, valid: Tensor) -> Tensor:
    """Zero the padded positions: x (B, T, d), valid (B, T) -> (B, T, d).

    A selection, not a product: NaN or inf in padding becomes an exact 0 and gets an exact 0
    gradient (``x * mask`` would keep NaN, and its backward ``grad * mask`` is fine but any later
    product with the padded value is not). Components call it on their inputs before any arithmetic.
    """
    return torch.where(valid.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over valid tokens: x (B, T, d) -> (B, d); a row without valid tokens gives zeros."""
    w = valid.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    return zero_invalid(x, valid).sum(1) / w.sum(1).clamp_min(1.0)


def masked_max(x: Tensor, valid: Tensor) -> Tensor:
    """Max over valid tokens: x (B, T, d) -> (B, d); a row without valid tokens gives zeros."""
    neg = torch.finfo(x.dtype).min
    out = x.masked_fill(~valid.unsqueeze(-1), neg).amax(1)
    return torch.where(valid.any(1, keepdim=True), out, torch.zeros_like(out))


def last_valid(x: Tensor, valid: Tensor) -> Tensor:
    """The last valid token of each row: x (B, T, d) -> (B, d)."""
    idx = (valid.long().sum(1) - 1).clamp_min(0)  # (B,)
    return zero_invalid(x, valid)[torch.arange(x.shape[0], device=x.device), idx]


def pool(x: Tensor, valid: Tensor, mode: str) -> Tensor:
    """Pool a sequence over its valid tokens: mode in {"mean", "max", "last"}."""
    if mode == "mean":
        return masked_mean(x, valid)
    if mode == "max":
        return masked_max(x, valid)
    if mode == "last":
        return last_valid(x, valid)
    raise ValueError(f"unknown pooling {mode!r}; use mean, max or last")


def sinusoidal_positions(T: int, d: int, device=None, dtype=torch.float32) -> Tensor:
    """Transformer sinusoidal position encodings (Vaswani et al. 2017, §3.5): (T, d)."""
    pos = torch.arange(T, device=device, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    div = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(T, d, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe.to(dtype)


def lengths(valid: Tensor) -> Tensor:
    """Number of valid tokens per row: (B, T) -> (B,) long."""
    return valid.long().sum(1)
