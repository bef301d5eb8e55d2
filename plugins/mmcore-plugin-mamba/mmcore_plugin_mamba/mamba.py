r"""The ``mamba`` encoder: a per-token projection to d_model, then a (bidirectional) Mamba stack."""

from __future__ import annotations

from torch import Tensor, nn

from mmcore.protocols import BuildContext

from .params import MambaEncoderParams
from .stack import BiMambaStack, MambaStack


class MambaEncoder(nn.Module):
    r"""Linear projection of one modality's raw features, then ``depth`` pre-norm residual Mamba layers.

    $$H^{(0)}_t = W x_t + b, \qquad H = \operatorname{MambaStack}_N(H^{(0)})
      \quad\text{or}\quad H = \tfrac12\big(\operatorname{Stack}_f(H^{(0)}) + \operatorname{Flip}\,
      \operatorname{Stack}_b(\operatorname{Flip} H^{(0)})\big)\ \text{(bidirectional)}$$

    with $x_t \in \mathbb{R}^{d_{in}}$, $H_t \in \mathbb{R}^{d}$ and $N$ = ``depth``.

    Reference: Mamba (Gu & Dao, arXiv:2312.00752) §3.4 for the stack; the bidirectional average as in
    MGMR-Net (Electronics 14(15):3088) §3.3.1. Neither AlignMamba nor MGMR-Net uses a Mamba encoder
    (they use LSTM/BERT + Conv1D, §3.2 of MGMR-Net): this is a convenience for recipes.
    Notation: $W, b$ is ``proj``; the stack is ``mamba``.
    Deviations: not a paper component (see above).
    Shapes: x (B, T, d_in), valid (B, T) -> (B, T, d_model); padded positions are zero.

    Args:
        params: :class:`~mmcore_plugin_mamba.params.MambaEncoderParams`.
        ctx: build context with ``in_dim`` (the modality's feature size).
    Raises:
        ValueError: ``ctx.in_dim`` is missing.
    """

    def __init__(self, params: MambaEncoderParams, ctx: BuildContext):
        super().__init__()
        if ctx.in_dim is None:
            raise ValueError("mamba encoder: needs ctx.in_dim (the modality's feature size), got None")
        self.proj = nn.Linear(ctx.in_dim, ctx.d_model)
        kwargs = dict(d_state=params.d_state, d_conv=params.d_conv, expand=params.expand, backend=params.backend,
                      dropout=ctx.dropout)
        self.mamba = (BiMambaStack(ctx.d_model, params.depth, **kwargs) if params.bidirectional
                      else MambaStack(ctx.d_model, params.depth, **kwargs))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """Encode; valid outputs never depend on padded inputs."""
        h = self.proj(x.masked_fill(~valid[..., None], 0.0))  # (B, T, d)
        return self.mamba(h, valid)
