r"""The alignment dynamics fitter: predicts each row of the windowed plan from the present modality.

$$\hat T = \mathrm{softmax}\big(\mathrm{Linear}(\mathrm{GRU}(Z^1; \psi_r); \psi_p)\big)
\in \mathbb R^{T_1 \times (2W+1)}$$

$\hat t_i$ predicts the row segment $\bar A^\star_{i,\, c_i - W : c_i + W}$ (Eq. 12). The softmax runs

* ``softmax="window"`` (default): only over the offsets that land on a valid victim position, and
  padded rows are 0 — every predicted row is a distribution supported inside the window (the paper
  defines $A^\star_{ij} = 0$ outside $[1, l]$ and keeps those offsets in the softmax);
* ``softmax="all"``: over all $2W + 1$ offsets, no mask; padded rows are $\mathrm{softmax}(b_p)$ — the
  authors' ``SinkhornFitter.forward`` (its out-of-range mass is dropped when the row is applied,
  :func:`mmcore_plugin_adl.window.to_dense`).

The GRU runs on packed sequences, so padding never reaches a valid output.
Parameters: ``gru`` (``nn.GRU``, one layer) and ``proj`` (``nn.Linear(H, 2W+1)``); the authors' names
are ``rnn`` and ``out`` (:func:`mmcore_plugin_adl.authors.fitter_state_from_authors`).

Reference: MM-Align (Han et al., EMNLP 2022), §3.4, Eq. 12.
Notation: ψ_r = ``gru``, ψ_p = ``proj``; Z¹ is ``z1``.
Deviations: bidirectional GRU by default (the authors' code; the paper does not say).
Shapes: z1 (B, T_1, d), geometry (B, T_1, 2W+1) -> rows (B, T_1, 2W+1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .window import WindowGeometry

__all__ = ["AlignmentFitter"]


class AlignmentFitter(nn.Module):
    """GRU + linear + softmax over the window (Eq. 12); ``softmax`` is ``"window"`` or ``"all"`` (module docstring)."""

    def __init__(self, d_model: int, hidden: int, window: int, bidirectional: bool = True, softmax: str = "window"):
        super().__init__()
        if softmax not in ("window", "all"):
            raise ValueError(f"AlignmentFitter: softmax must be 'window' or 'all'; got {softmax!r}")
        self.window, self.softmax = window, softmax
        self.gru = nn.GRU(d_model, hidden, batch_first=True, bidirectional=bidirectional)
        self.proj = nn.Linear(hidden * (2 if bidirectional else 1), 2 * window + 1)

    def forward(self, z1: Tensor, valid1: Tensor, geo: WindowGeometry | None = None) -> Tensor:
        """Predicted rows. ``window``: each valid row a distribution over its ok cells (needs ``geo``);
        ``all``: a softmax over every offset of every row, padded rows included (``geo`` unused).

        Shapes: z1 (B, T_1, d), valid1 (B, T_1) -> (B, T_1, 2W+1).
        """
        B, T1, _ = z1.shape
        K = 2 * self.window + 1
        if self.softmax == "window" and (geo is None or geo.ok.shape != (B, T1, K)):
            got = None if geo is None else tuple(geo.ok.shape)
            raise ValueError(f"AlignmentFitter: geometry is {got}; expected {(B, T1, K)} (window W={self.window})")
        lengths = valid1.sum(1).clamp_min(1).cpu()  # pack_padded_sequence wants CPU lengths
        packed = pack_padded_sequence(z1, lengths, batch_first=True, enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=T1)  # (B, T_1, H), zeros at padded steps
        logits = self.proj(h)  # (B, T_1, 2W+1)
        if self.softmax == "all":
            return torch.softmax(logits, dim=-1)  # (B, T_1, 2W+1); padded rows softmax(bias)
        row_ok = geo.ok.any(-1, keepdim=True)  # (B, T_1, 1): valid rows (every valid row reaches c_i)
        logits = logits.masked_fill(~geo.ok, float("-inf"))
        logits = torch.where(row_ok, logits, torch.zeros_like(logits))  # padded rows: no all -inf softmax
        return torch.softmax(logits, dim=-1) * row_ok  # (B, T_1, 2W+1)
