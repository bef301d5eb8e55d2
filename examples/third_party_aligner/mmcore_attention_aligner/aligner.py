r"""Attention aligner: every modality is resampled onto the anchor's time axis by soft attention.

$$A_m = \mathrm{softmax}_j\Big(\frac{(X_a W_q)(X_m W_k)^\top}{\tau\sqrt d}\Big),\qquad \tilde X_m = A_m X_m$$

with $X_a$ (B, T_a, d) the anchor, $X_m$ (B, T_m, d) another modality, padded keys masked out,
so each row of $A_m$ (B, T_a, T_m) is a distribution over the valid frames of $m$.
"""

from torch import nn

from mmcore.functional import zero_invalid
from mmcore.protocols import AlignerOutput


class AttentionAligner(nn.Module):
    """Soft cross-attention alignment onto ``anchor`` (shapes: seqs[m] (B, T_m, d) -> (B, T_anchor, d))."""

    def __init__(self, params, ctx):
        super().__init__()
        self.anchor, self.tau = params.anchor, params.temperature
        self.q, self.k = nn.Linear(ctx.d_model, ctx.d_model), nn.Linear(ctx.d_model, ctx.d_model)
        self._plans = {}

    def forward(self, seqs, valid):
        seqs = {m: zero_invalid(x, valid[m]) for m, x in seqs.items()}  # padding holds nothing, not even NaN
        xa, va = seqs[self.anchor], valid[self.anchor]
        out, self._plans = {self.anchor: xa}, {}
        for m, x in seqs.items():
            if m == self.anchor:
                continue
            scores = self.q(xa) @ self.k(x).transpose(1, 2) / (self.tau * x.shape[-1] ** 0.5)  # (B, T_a, T_m)
            plan = scores.masked_fill(~valid[m][:, None, :], float("-inf")).softmax(-1)
            out[m] = (plan @ x) * va[..., None]  # (B, T_a, d); padded anchor rows stay 0
            self._plans[m] = plan.detach()
        return AlignerOutput(out, {m: va for m in seqs}, {})

    def alignment_plans(self):
        """Plans of the last forward, {modality: (B, T_anchor, T_m)} (for `mmcore plot ot-plan`)."""
        return self._plans
