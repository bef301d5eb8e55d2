r"""Stacks of Mamba blocks: pre-norm residual layers (``MambaStack``) and their bidirectional average
(``BiMambaStack``), the building blocks of this plugin's fuser, aligner and encoder.

Reference: the residual/norm layout of ``mamba_ssm.models.mixer_seq_simple.MixerModel`` (Gu & Dao,
arXiv:2312.00752, §3.4, "the Mamba block ... interleaved with standard normalization and residual
connections"), with LayerNorm; the bidirectional average is MGMR-Net's Stage 1 (Electronics 14(15):3088,
§3.3.1, "the forward and backward outputs are averaged").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .block import MambaBlock, flip_valid

__all__ = ["BiMambaStack", "MambaStack"]


class MambaStack(nn.Module):
    r"""``depth`` pre-norm residual Mamba layers and a final LayerNorm over end-padded rows.

    $$H^{(0)} = X, \qquad H^{(n)} = H^{(n-1)} + \operatorname{Dropout}\big(\operatorname{Mamba}^{(n)}
      (\operatorname{LN}^{(n)}(H^{(n-1)}))\big), \qquad Y = \operatorname{LN}_f(H^{(N)})$$

    with $X, H^{(n)}, Y \in \mathbb{R}^{T \times d}$ per row and $N$ = ``depth``; padded positions of $Y$ are 0.

    Reference: Mamba (arXiv:2312.00752) §3.4 and ``mamba_ssm`` ``MixerModel`` (pre-norm residual blocks,
    final norm).
    Notation: $\operatorname{Mamba}^{(n)}$ is ``layers[n].mixer`` (a :class:`~mmcore_plugin_mamba.block.MambaBlock`).
    Deviations: LayerNorm rather than mamba-ssm's optional RMSNorm; dropout on the residual branch
    (the papers name none; 0 keeps the block exact).
    Shapes: x (B, T, d), valid (B, T) prefix mask or None -> (B, T, d).

    Args:
        d_model: width d.
        depth: number of layers N.
        d_state, d_conv, expand, backend: passed to every ``MambaBlock``.
        dropout: dropout probability on each residual branch.
    """

    def __init__(self, d_model: int, depth: int, *, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 backend: str = "auto", dropout: float = 0.0):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(depth))
        self.mixers = nn.ModuleList(MambaBlock(d_model, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)
                                    for _ in range(depth))
        self.norm_f = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Run the stack; valid outputs never depend on padded inputs (the blocks are causal)."""
        if valid is not None:
            x = x.masked_fill(~valid[..., None], 0.0)
        for norm, mixer in zip(self.norms, self.mixers):
            x = x + self.drop(mixer(norm(x), valid))  # (B, T, d)
        y = self.norm_f(x)
        return y if valid is None else y.masked_fill(~valid[..., None], 0.0)


class BiMambaStack(nn.Module):
    r"""Bidirectional Mamba: the average of a forward stack and a stack run over the time-flipped rows.

    $$H_f = \operatorname{Stack}_f(X), \qquad H_b = \operatorname{Flip}\big(\operatorname{Stack}_b(
      \operatorname{Flip}(X))\big), \qquad C = \tfrac12 (H_f + H_b)$$

    where Flip reverses each row's valid prefix (:func:`~mmcore_plugin_mamba.block.flip_valid`), so
    padding stays at the end and every valid output sees the whole valid row.

    Reference: MGMR-Net (Yang et al., Electronics 14(15):3088, 2025), §3.3.1 Stage 1, the forward and
    backward recursions and $C^t_m = \tfrac12 (H^{t,(N)}_{m,f} + H^{t,(N)}_{m,b})$.
    Notation: $\operatorname{Stack}_f$ is ``forward_stack``, $\operatorname{Stack}_b$ ``backward_stack``
    (the same module when ``share=True``); each is a :class:`MambaStack` of ``depth`` layers.
    Deviations: none beyond :class:`MambaStack`'s; whether the two directions share weights is not
    stated in the paper (``share``; default separate, as Vision Mamba's bidirectional blocks).
    Shapes: x (B, T, d), valid (B, T) or None -> (B, T, d).
    """

    def __init__(self, d_model: int, depth: int, *, share: bool = False, **kwargs):
        super().__init__()
        self.forward_stack = MambaStack(d_model, depth, **kwargs)
        self.backward_stack = self.forward_stack if share else MambaStack(d_model, depth, **kwargs)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        h_f = self.forward_stack(x, valid)  # (B, T, d)
        h_b = flip_valid(self.backward_stack(flip_valid(x, valid), valid), valid)  # (B, T, d)
        return 0.5 * (h_f + h_b)


def check_streams(who: str, seqs: dict[str, Tensor], valid: dict[str, Tensor], expected: list[str],
                  d_model: int) -> None:
    """ValueError unless every expected stream is there with shape (B, T_m, d_model) and a (B, T_m) bool mask."""
    missing = [m for m in expected if m not in seqs or m not in valid]
    if missing:
        raise ValueError(f"{who}: built for streams {expected} but got seqs {sorted(seqs)} and valid {sorted(valid)}; "
                         f"missing {missing}")
    B = seqs[expected[0]].shape[0]
    for m in expected:
        x, v = seqs[m], valid[m]
        if x.dim() != 3 or x.shape[0] != B or x.shape[-1] != d_model:
            raise ValueError(f"{who}: {m} is {tuple(x.shape)}; every stream needs (B={B}, T_m, d={d_model})")
        if v.shape != x.shape[:2] or v.dtype != torch.bool:
            raise ValueError(f"{who}: valid[{m!r}] must be bool of shape {tuple(x.shape[:2])}, got {v.dtype} "
                             f"{tuple(v.shape)}")
