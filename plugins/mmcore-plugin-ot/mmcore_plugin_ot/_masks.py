"""Mask helpers shared by the OT kernels: padding as zero weights, NaN-free masked reductions.

Why: padding and windowed costs put ``-inf`` into log-domain tensors. ``torch.logsumexp`` of a slice
that is entirely ``-inf`` returns ``-inf`` and its backward is ``0 * nan = nan`` even when the caller
discards that slice with ``torch.where``. The helpers here keep every forward value and every gradient
finite, so callers can mask the result and stay NaN-free in both passes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["uniform_weights", "masked_logsumexp", "compute_dtype", "tiny", "exp_floor"]


def uniform_weights(valid: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Uniform marginals over the valid tokens of each row, zero on padding.

    $$a_{bi} = \frac{\mathrm{valid}_{bi}}{\max(1, \sum_{i'} \mathrm{valid}_{bi'})}$$

    Shapes: valid (B, T) bool -> weights (B, T); a row with no valid token is all zeros.

    Args:
        valid: True on real tokens.
        dtype: floating dtype of the result.
    Returns:
        The weights, each valid row summing to 1.
    """
    w = valid.to(dtype)  # (B, T)
    return w / w.sum(-1, keepdim=True).clamp_min(1.0)


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half and bfloat16 are upcast)."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def tiny(dtype: torch.dtype) -> float:
    """Smallest positive normal number of ``dtype``: the floor that keeps ``log`` finite."""
    return torch.finfo(dtype).tiny


def exp_floor(dtype: torch.dtype) -> float:
    """Log of the smallest value worth an ``exp``: ``log(tiny) + 8`` (-79 in float32, -700 in float64).

    Why: an ``exp`` whose result underflows takes the slow sub-normal path on x86 (5-20x slower);
    clamping its argument here changes each such term by less than ``e^-79`` (float32).
    """
    return math.log(tiny(dtype)) + 8.0


def masked_logsumexp(x: Tensor, dim: int | tuple[int, ...]) -> Tensor:
    r"""``logsumexp`` over ``dim`` that is finite (forward and backward) on all ``-inf`` slices.

    $$\mathrm{lse}(x) = c + \log \sum_k e^{\max(x_k - c,\ \ell)},
      \quad c = \max_k x_k \text{ if finite else } 0, \quad \ell = \log(\mathrm{tiny}) + 8$$

    A slice with at least one finite entry gets ``logsumexp`` to relative precision $K e^{\ell}$
    (terms below $e^{\ell}$ relative to the largest are rounded up to it instead of to the sub-normal
    range, which is slow); an all ``-inf`` slice gets a finite junk value that the caller must mask
    out. ``+inf`` entries are not supported.

    Shapes: x (..., K, ...) -> x with ``dim`` removed.
    """
    c = x.amax(dim=dim, keepdim=True).detach()  # the shift cancels in the gradient
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    s = torch.exp((x - c).clamp_min(exp_floor(x.dtype))).sum(dim=dim, keepdim=True)
    out = torch.log(s) + c
    dims = (dim,) if isinstance(dim, int) else dim
    return out.squeeze(dims)
