r"""The alignment window for sequences of different lengths, and moves between window and dense form.

For a pair with valid lengths $T_1$ (present) and $T_2$ (victim), row $i$ of the plan is centred on
the victim position

$$c_i = \mathrm{round}\Big(i\,\frac{T_2 - 1}{T_1 - 1}\Big)\quad (T_1 > 1),\qquad c_0 = \lfloor (T_2 - 1)/2 \rfloor\quad (T_1 = 1)$$

(round half up, in exact integer arithmetic), and cell $(i, j)$ is inside the window iff
$|j - c_i| \le W$ and $0 \le j < T_2$. For $T_1 = T_2$ this is MM-Align's $|i - j| \le W$ (Eq. 7,
Eq. 12). Window form stores row $i$ as $2W + 1$ offsets $o \in \{-W, \dots, W\}$, $j = c_i + o$.

A victim position $j$ that no valid row reaches ($|j - c_i| > W$ for every $i$) is *uncovered*: it
gets no marginal mass in the OT problem and no imputation (zero). Every position is covered when
$T_2 - 1 \le (2W + 1)(T_1 - 1)$ (and $T_2 \le 2W + 1$ for $T_1 = 1$).

Reference: MM-Align (Han et al., EMNLP 2022), §3.4, Eq. 7 and 12–14.
Deviations: the paper (and its code) assume $T_1 = T_2$; the length-normalised centre $c_i$ is ours.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["WindowGeometry", "window_geometry", "to_dense", "to_window"]


class WindowGeometry(NamedTuple):
    """Where each window cell of each row lands on the victim axis.

    index: (B, T_1, 2W+1) long, victim position j = c_i + o (may be outside [0, T_2) when not ok).
    ok: (B, T_1, 2W+1) bool, valid row i, 0 <= j < T_2 of that pair.
    band: (B, T_1, T_2) bool, the same cells in dense form (valid rows and columns only).
    covered: (B, T_2) bool, valid victim positions some valid row reaches.
    """

    index: Tensor
    ok: Tensor
    band: Tensor
    covered: Tensor

    @property
    def width(self) -> int:
        return self.index.shape[-1]


def window_geometry(valid1: Tensor, valid2: Tensor, window: int) -> WindowGeometry:
    r"""The window of every row of every pair (see the module docstring for $c_i$).

    Shapes: valid1 (B, T_1) and valid2 (B, T_2) bool prefix masks -> :class:`WindowGeometry`.

    Args:
        valid1: True on the present modality's real tokens.
        valid2: True on the victim modality's real tokens (its length even when it is missing).
        window: W >= 0.
    Raises:
        ValueError: if the batch sizes differ or W < 0.
    """
    if valid1.dim() != 2 or valid2.dim() != 2 or valid1.shape[0] != valid2.shape[0]:
        raise ValueError(f"window_geometry: valid1 is {tuple(valid1.shape)} and valid2 is {tuple(valid2.shape)}; "
                         "need (B, T_1) and (B, T_2) with the same B")
    if window < 0:
        raise ValueError(f"window_geometry: window must be >= 0; got {window}")
    B, T1 = valid1.shape
    T2 = valid2.shape[1]
    dev = valid1.device
    n1 = valid1.sum(1, keepdim=True).long()  # (B, 1)
    n2 = valid2.sum(1, keepdim=True).long()  # (B, 1)
    i = torch.arange(T1, device=dev).unsqueeze(0)  # (1, T_1)
    den = (n1 - 1).clamp_min(1)  # (B, 1)
    centre = torch.div(2 * i * (n2 - 1) + den, 2 * den, rounding_mode="floor")  # (B, T_1): round half up
    centre = torch.where(n1 == 1, torch.div(n2 - 1, 2, rounding_mode="floor"), centre)
    offsets = torch.arange(-window, window + 1, device=dev)  # (2W+1,)
    index = centre.unsqueeze(-1) + offsets  # (B, T_1, 2W+1)
    ok = valid1.unsqueeze(-1) & (index >= 0) & (index < n2.unsqueeze(-1))  # (B, T_1, 2W+1)
    j = torch.arange(T2, device=dev)
    band = (j.view(1, 1, T2) - centre.unsqueeze(-1)).abs() <= window  # (B, T_1, T_2)
    band = band & valid1.unsqueeze(-1) & valid2.unsqueeze(1)
    return WindowGeometry(index, ok, band, band.any(1))


def to_dense(win: Tensor, geo: WindowGeometry, T2: int) -> Tensor:
    """Window form -> dense (B, T_1, T_2); cells outside the window are exactly 0.

    Shapes: win (B, T_1, 2W+1) -> (B, T_1, T_2). Differentiable in ``win``.
    """
    B, T1, K = win.shape
    W = (K - 1) // 2
    win = win.masked_fill(~geo.ok, 0.0)
    buf = win.new_zeros(B, T1, T2 + 2 * W)  # (B, T_1, T_2 + 2W): room for offsets past either end
    idx = (geo.index + W).clamp(0, T2 + 2 * W - 1)  # cells clamped here are not ok: they carry 0
    return buf.scatter_add(-1, idx, win)[..., W:W + T2]  # (B, T_1, T_2)


def to_window(dense: Tensor, geo: WindowGeometry) -> Tensor:
    """Dense (B, T_1, T_2) -> window form (B, T_1, 2W+1); cells that are not ok are 0."""
    B, T1, T2 = dense.shape
    W = (geo.width - 1) // 2
    padded = torch.nn.functional.pad(dense, (W, W))  # (B, T_1, T_2 + 2W)
    idx = (geo.index + W).clamp(0, T2 + 2 * W - 1)
    return padded.gather(-1, idx).masked_fill(~geo.ok, 0.0)  # (B, T_1, 2W+1)
