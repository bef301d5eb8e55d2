r"""Token-to-token cost matrices for the aligners: cosine / squared Euclidean, padding and windows.

Every function here takes the anchor first: rows index anchor tokens, columns the other modality's
frames, as in the plans of :mod:`mmcore.plots` (``(B, T_anchor, T_m)``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._masks import compute_dtype

#: Norm floor of the cosine cost: a zero vector (a missing instance's zero input) has cosine 0 to
#: everything, i.e. cost 1, instead of 0/0.
COS_EPS = 1e-8


def cosine_cost(x: Tensor, y: Tensor) -> Tensor:
    r"""Cosine distance between every pair of tokens, in [0, 2].

    $$C_{ij} = 1 - \frac{x_i \cdot y_j}{\max(\lVert x_i\rVert, \epsilon)\,\max(\lVert y_j\rVert, \epsilon)}$$

    Reference: AlignMamba (arXiv 2412.00833), §3.2, Eq. 3.
    Shapes: x (B, n, d), y (B, m, d) -> (B, n, m), in float32 (float64 if an input is float64).
    """
    work = compute_dtype(x, y)
    xn = torch.nn.functional.normalize(x.to(work), dim=-1, eps=COS_EPS)  # (B, n, d)
    yn = torch.nn.functional.normalize(y.to(work), dim=-1, eps=COS_EPS)  # (B, m, d)
    return (1.0 - torch.bmm(xn, yn.transpose(1, 2))).clamp(0.0, 2.0)  # (B, n, m)


def sqeuclidean_cost(x: Tensor, y: Tensor) -> Tensor:
    r"""Squared Euclidean distance per feature, $C_{ij} = \lVert x_i - y_j \rVert_2^2 / d$.

    Why ``/ d``: the same ``reg`` then means the same thing for any ``d_model``.
    Shapes: x (B, n, d), y (B, m, d) -> (B, n, m), in float32 (float64 if an input is float64).
    """
    work = compute_dtype(x, y)
    return torch.cdist(x.to(work), y.to(work)).square() / x.shape[-1]  # (B, n, m)


def mask_cost(cost: Tensor, row_valid: Tensor, col_valid: Tensor) -> Tensor:
    """``+inf`` on padded rows and columns (the kernels give them no mass): (B, n, m) -> (B, n, m)."""
    keep = row_valid.unsqueeze(2) & col_valid.unsqueeze(1)  # (B, n, m)
    return cost.masked_fill(~keep, math.inf)


def window_band(row_valid: Tensor, col_valid: Tensor, K: int) -> Tensor:
    r"""Cells inside a band of half-width ``K`` around the diagonal, scaled to each pair's lengths.

    With $n$, $m$ the valid lengths of a pair, token $i$ covers $[i, i+1)/n$ and frame $j$ covers
    $[j, j+1)/m$ of the utterance; the cell is admissible iff the centres are closer than
    $K / \min(n, m) + \tfrac12 (1/n + 1/m)$, i.e. in integers

    $$\lvert (2i + 1)\,m - (2j + 1)\,n \rvert < 2K \max(n, m) + n + m .$$

    ``K = 0`` keeps exactly the cells whose time intervals overlap, so every row and column keeps a
    cell and the band always holds a transport plan (the monotone coupling lies in it); each step of
    ``K`` widens the band by one step of the shorter sequence. For $n = m$ this is MM-Align's
    $\lvert i - j \rvert \le K$.

    Shapes: row_valid (B, n), col_valid (B, m) bool prefix masks -> (B, n, m) bool.
    """
    n = row_valid.sum(1).clamp_min(1).view(-1, 1, 1)  # (B, 1, 1)
    m = col_valid.sum(1).clamp_min(1).view(-1, 1, 1)
    i = torch.arange(row_valid.shape[1], device=row_valid.device).view(1, -1, 1)  # (1, n, 1)
    j = torch.arange(col_valid.shape[1], device=col_valid.device).view(1, 1, -1)  # (1, 1, m)
    gap = ((2 * i + 1) * m - (2 * j + 1) * n).abs()  # (B, n, m), exact integers
    return gap < 2 * K * torch.maximum(n, m) + n + m
