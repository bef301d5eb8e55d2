r"""AlignMamba's Mamba-based fusion: interleave the aligned streams in time-priority order, run stacked
Mamba layers over the one sequence, pool it.

$$X_{mm} = [\tilde X^1_a, \tilde X^1_v, X^1_l,\ \tilde X^2_a, \tilde X^2_v, X^2_l,\ \dots,\
  \tilde X^T_a, \tilde X^T_v, X^T_l] \in \mathbb{R}^{3T \times d}, \qquad
  r = \operatorname{pool}\big(\operatorname{MambaStack}(X_{mm})\big) \in \mathbb{R}^{d}$$
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcore.functional import pool
from mmcore.protocols import BuildContext, FuserOutput

from ._interleave import interleave, resample_to_longest
from .params import InterleavedMambaParams
from .stack import MambaStack, check_streams

#: AlignMamba's order within a time step (Eq. 11): audio, vision, language.
PAPER_ORDER = ("audio", "vision", "text")


def stream_order(streams: list[str], order: tuple[str, ...] | None, who: str) -> list[str]:
    """The streams in interleaving order: ``order`` (or AlignMamba's a, v, l) first, the rest as received."""
    first = [m for m in PAPER_ORDER if m in streams] if order is None else list(order)
    unknown = [m for m in first if m not in streams]
    if unknown:
        raise ValueError(f"{who}: order names {unknown}, but the fuser receives the streams {streams}; "
                         "list only those (null takes AlignMamba's audio, vision, text)")
    return first + [m for m in streams if m not in first]


class InterleavedMambaFuser(nn.Module):
    r"""Time-priority interleaving of every stream, a pre-norm residual Mamba stack, pooling.

    $$X_{mm} = [x^{s_1}_1, \dots, x^{s_S}_1,\ x^{s_1}_2, \dots, x^{s_S}_2,\ \dots], \qquad
      H = \operatorname{MambaStack}_N(X_{mm}), \qquad r = \operatorname{pool}_{t\,:\,\mathrm{valid}}(H_t)$$

    with $x^{s}_t \in \mathbb{R}^d$ token $t$ of stream $s$ (streams in ``order``), $N$ = ``depth``
    layers $H^{(n)} = H^{(n-1)} + \operatorname{Mamba}(\operatorname{LN}(H^{(n-1)}))$ and a final LN
    (:class:`~mmcore_plugin_mamba.stack.MambaStack`), pool = mean, max or last over valid tokens.

    Reference: AlignMamba (Li et al., CVPR 2025, arXiv 2412.00833), §3.4, Eq. 11 ("time-priority
    scanning", "multiple Mamba layers"); MGMR-Net (Electronics 14(15):3088), §3.3.1 Stage 2 (the same
    interleaving, N Mamba layers, $F_{final} = \max_{t \le 3T} F[t]$): ``pool: max``, ``d_state: 12``,
    ``expand: 4``, ``depth: 1``.
    Notation: $\tilde X_a, \tilde X_v, X_l$ are ``seqs["audio"]``, ``seqs["vision"]``, ``seqs["text"]``;
    the paper's $T$ is every stream's length after alignment.
    Padding: step $t$ holds the streams still valid at $t$ in that row, and each row is compacted
    (valid tokens first, in time-priority order, padding at the end), so the causal scan never
    reads a padded position before a valid one and the output does not depend on padded values.
    Unequal lengths (``unequal_lengths``): ``pad`` interleaves by index on $T = \max_s T_s$ (every
    token once; Eq. 11 exactly when the streams share a time axis, e.g. after ``relaxed_ot``);
    ``resample`` stretches each row's streams to its longest valid length first (relative time);
    ``error`` refuses streams of different $T_s$.
    Deviations: the papers give no depth, pooling or state size for AlignMamba: depth 2, mean
    pooling, Mamba's defaults (d_state 16, expand 2). Pre-norm residual layers with a final LayerNorm
    (the papers' "Mamba layers" are unspecified); ``modality_embedding`` (off by default) is not in them.
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, d); ``out_dim`` = d.

    Args:
        params: :class:`~mmcore_plugin_mamba.params.InterleavedMambaParams`.
        ctx: build context; its ``modalities`` are the streams the fuser receives.
    Raises:
        ValueError: ``order`` names a stream the fuser does not receive; at forward, missing streams,
            shapes that disagree, or (``unequal_lengths: error``) streams of different lengths.
    """

    def __init__(self, params: InterleavedMambaParams, ctx: BuildContext):
        super().__init__()
        self.streams = stream_order(list(ctx.modalities), params.order, "interleaved_mamba")
        self.d_model, self.pool_mode, self.unequal = ctx.d_model, params.pool, params.unequal_lengths
        self.embed = (nn.Parameter(torch.zeros(len(self.streams), ctx.d_model)) if params.modality_embedding
                      else None)
        self.mamba = MambaStack(ctx.d_model, params.depth, d_state=params.d_state, d_conv=params.d_conv,
                                expand=params.expand, backend=params.backend, dropout=ctx.dropout)
        self.out_dim = ctx.d_model

    def interleaved(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The compacted time-priority sequence the Mamba stack reads: (B, L, d) and its (B, L) prefix mask."""
        check_streams("interleaved_mamba", seqs, valid, self.streams, self.d_model)
        xs, vs = [seqs[m] for m in self.streams], [valid[m] for m in self.streams]
        if self.embed is not None:
            xs = [x + self.embed[i] for i, x in enumerate(xs)]
        if len({x.shape[1] for x in xs}) > 1:
            if self.unequal == "error":
                got = ", ".join(f"{m} T={x.shape[1]}" for m, x in zip(self.streams, xs))
                raise ValueError(f"interleaved_mamba: interleaving needs one time axis, got {got}; put an aligner "
                                 "first (e.g. relaxed_ot maps every stream onto the anchor's axis), or set "
                                 "unequal_lengths: pad | resample")
        if self.unequal == "resample":
            xs, vs = resample_to_longest(xs, vs)
        packed = interleave(xs, vs, time_major=True)
        return packed.x, packed.valid

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        """Fuse; see the class docstring. Returns ``FuserOutput(rep (B, d), {})``."""
        x, v = self.interleaved(seqs, valid)  # (B, L, d), (B, L)
        h = self.mamba(x, v)  # (B, L, d)
        return FuserOutput(pool(h, v, self.pool_mode), {})
