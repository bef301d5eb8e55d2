r"""Interleave several padded streams into one prefix-masked sequence, and split it back.

Why: a causal scan over end-padded rows is padding-invariant only if every row's valid tokens come
first. Interleaving streams of different valid lengths step by step leaves holes ([a_1, v_1, l_1, -,
v_2, l_2, ...] when audio has one valid frame): ``interleave`` compacts each row, keeping the
time-priority order of its valid tokens and moving every hole to the end, so the result is an
ordinary end-padded sequence that ``MambaBlock`` accepts. ``deinterleave`` is its inverse on the
valid tokens (padding comes back as zeros).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Packed(NamedTuple):
    """One interleaved, row-compacted sequence and what ``deinterleave`` needs to undo it."""

    x: Tensor  # (B, L, d), L = the longest row's number of valid tokens (>= 1); padding zeroed
    valid: Tensor  # (B, L) bool prefix mask
    dest: Tensor  # (B, G) long: position in x of each grid cell (G = T·S; cells >= a row's count are holes)
    grid_valid: Tensor  # (B, G) bool: which grid cells are real tokens
    lengths: tuple[int, ...]  # T_s of each stream, to cut the padding off again
    time_major: bool


def _check(xs: list[Tensor], valids: list[Tensor], who: str) -> None:
    if not xs or len(xs) != len(valids):
        raise ValueError(f"{who}: needs one valid mask per stream and at least one stream, got {len(xs)} streams "
                         f"and {len(valids)} masks")
    B, d = xs[0].shape[0], xs[0].shape[-1]
    for i, (x, v) in enumerate(zip(xs, valids)):
        if x.dim() != 3 or x.shape[0] != B or x.shape[-1] != d:
            raise ValueError(f"{who}: stream {i} is {tuple(x.shape)}; every stream needs shape (B={B}, T, d={d})")
        if v.shape != x.shape[:2] or v.dtype != torch.bool:
            raise ValueError(f"{who}: the mask of stream {i} must be bool of shape {tuple(x.shape[:2])}, "
                             f"got {v.dtype} {tuple(v.shape)}")


def interleave(xs: list[Tensor], valids: list[Tensor], *, time_major: bool = True) -> Packed:
    r"""Interleave streams on a shared index axis and compact each row so its valid tokens come first.

    $$\mathrm{grid} = [x^1_1, \dots, x^S_1,\ x^1_2, \dots, x^S_2,\ \dots]\ \text{(time-major)}, \qquad
      \mathrm{out}_b = \big(\mathrm{grid}_{b,g} : \mathrm{valid}_{b,g}\big)_{g \text{ ascending}}
      \ \Vert\ \text{padding}$$

    Stream-major (``time_major=False``) lays out the grid as $[x^1_1..x^1_T, x^2_1..x^2_T, ...]$ instead
    (concatenation). Streams shorter than $T = \max_s T_s$ are end-padded first.
    Shapes: xs[s] (B, T_s, d), valids[s] (B, T_s) -> x (B, L, d), valid (B, L), L = max_b Σ_s ℓ_{s,b}.

    Raises:
        ValueError: streams disagree on B or d, or a mask has the wrong shape or dtype.
    """
    _check(xs, valids, "interleave")
    B, d, S = xs[0].shape[0], xs[0].shape[-1], len(xs)
    T = max(x.shape[1] for x in xs)
    dim = 2 if time_major else 1
    grid = torch.stack([F.pad(x, (0, 0, 0, T - x.shape[1])) for x in xs], dim).reshape(B, T * S, d)  # (B, G, d)
    gv = torch.stack([F.pad(v, (0, T - v.shape[1]), value=False) for v in valids], dim).reshape(B, T * S)  # (B, G)
    vi = gv.long()
    count = vi.sum(1, keepdim=True)  # (B, 1)
    # a stable partition: valid cells keep their order at 0..count-1, holes follow at count..G-1
    dest = torch.where(gv, vi.cumsum(1) - 1, count + (1 - vi).cumsum(1) - 1)  # (B, G)
    src = torch.empty_like(dest).scatter_(1, dest, torch.arange(T * S, device=dest.device).expand(B, -1))  # (B, G)
    L = max(int(count.max()), 1)
    valid = torch.arange(L, device=gv.device) < count  # (B, L)
    x = grid.gather(1, src[:, :L, None].expand(B, L, d)).masked_fill(~valid[..., None], 0.0)  # (B, L, d)
    return Packed(x, valid, dest, gv, tuple(x.shape[1] for x in xs), time_major)


def deinterleave(y: Tensor, packed: Packed) -> list[Tensor]:
    """Split a sequence laid out as ``packed`` back into its streams; padded positions are zero.

    Shapes: y (B, L, d') -> [(B, T_s, d') for each stream].
    Raises:
        ValueError: y does not have packed's (B, L).
    """
    B, L = packed.valid.shape
    if y.dim() != 3 or y.shape[:2] != (B, L):
        raise ValueError(f"deinterleave: y must be (B, L, d) = ({B}, {L}, d) like the packed sequence, "
                         f"got {tuple(y.shape)}")
    S, T, d = len(packed.lengths), max(packed.lengths), y.shape[-1]
    pos = packed.dest.clamp(max=L - 1)  # (B, G): holes point anywhere, then get zeroed
    grid = y.gather(1, pos[..., None].expand(B, T * S, d)).masked_fill(~packed.grid_valid[..., None], 0.0)
    grid = grid.view(B, T, S, d) if packed.time_major else grid.view(B, S, T, d).transpose(1, 2)  # (B, T, S, d)
    return [grid[:, : packed.lengths[s], s] for s in range(S)]


def resample_to_longest(xs: list[Tensor], valids: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    r"""Stretch every stream of a row to the row's longest valid length (nearest index, relative time).

    $$\ell^\star_b = \max_s \ell_{s,b}, \qquad \mathrm{out}^s_{b,t} = x^s_{b,\ \lfloor (t + 1/2)\,
      \ell_{s,b} / \ell^\star_b \rfloor} \quad (t < \ell^\star_b,\ \ell_{s,b} > 0)$$

    A stream with no valid token in a row stays empty there; only valid tokens are read, so padding
    never reaches the output. Shapes: xs[s] (B, T_s, d) -> every output (B, T, d), T = max_s T_s.
    """
    _check(xs, valids, "resample_to_longest")
    B, d = xs[0].shape[0], xs[0].shape[-1]
    T = max(x.shape[1] for x in xs)
    lens = torch.stack([v.long().sum(1) for v in valids], 1)  # (B, S)
    longest = lens.amax(1, keepdim=True).clamp_min(1)  # (B, 1)
    t = torch.arange(T, device=lens.device)  # (T,)
    out_x, out_v = [], []
    for s, x in enumerate(xs):
        ls = lens[:, s : s + 1]  # (B, 1)
        idx = ((2 * t + 1) * ls) // (2 * longest)  # (B, T): < ls whenever t < longest
        v = (t < longest) & (ls > 0)  # (B, T)
        idx = torch.where(v, idx, 0).clamp(max=x.shape[1] - 1)
        out_x.append(x.gather(1, idx[..., None].expand(B, T, d)).masked_fill(~v[..., None], 0.0))
        out_v.append(v)
    return out_x, out_v
