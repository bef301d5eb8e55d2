"""Built-in aligner: identity."""

from __future__ import annotations

from torch import Tensor, nn

from ..protocols import AlignerOutput, BuildContext
from .params import IdentityParams


class IdentityAligner(nn.Module):
    r"""No alignment: $\tilde X_m = X_m$ for every modality m.

    Shapes: seqs[m] (B, T_m, d) -> the same tensors; no auxiliary losses.
    """

    def __init__(self, params: IdentityParams, ctx: BuildContext):
        super().__init__()

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> AlignerOutput:
        return AlignerOutput(dict(seqs), dict(valid), {})
