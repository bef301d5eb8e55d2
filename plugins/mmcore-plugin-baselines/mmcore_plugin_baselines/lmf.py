"""Low-rank Multimodal Fusion as one fuser (its sub-networks inside), equal to MMSA 2.2.1's ``LMF``."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.init import xavier_normal_

from mmcore.protocols import BuildContext, FuserOutput

from ._subnets import subnets
from .params import LMFParams


class LMFFuser(nn.Module):
    r"""Low-rank fusion: the tensor-fusion product with a rank-r factorised weight.

    $$h = \sum_{i=1}^{r} w_i \Big(\prod_{m=1}^{M} W_m^{(i)} \begin{bmatrix}1\\h_m\end{bmatrix}\Big) + b$$

    $h_m \in \mathbb R^{k_m}$ is modality m's sub-network output, $W_m^{(i)} \in \mathbb R^{o \times (k_m+1)}$
    its i-th factor, $w \in \mathbb R^{r}$ the fusion weights, $b \in \mathbb R^{o}$, $\prod$ elementwise.
    In MMSA $h$ is the prediction ($o$ = 1 for regression): pair it with head ``mmsa_output``, ``linear: false``.

    Reference: Liu et al., Efficient Low-rank Multimodal Fusion with Modality-Specific Factors, ACL 2018, §3.3,
    Eq. 6; MMSA 2.2.1 ``MMSA/models/singleTask/LMF.py``.
    Notation: $W_m^{(i)}$ is ``factors[m][i]`` (MMSA ``audio_factor`` etc., shape (r, k_m + 1, o)); $w$ is
    ``fusion_weights`` (1, r); $b$ is ``fusion_bias`` (1, o); a TextSubNet outputs hidden // 2 (MMSA text_out).
    Deviations: sequences are averaged / read by the LSTM over valid steps only (MMSA includes the padding);
    identical on full-length data. MMSA's ``post_fusion_dropout`` is defined but unused; so here.
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, o).
    """

    def __init__(self, params: LMFParams, ctx: BuildContext):
        super().__init__()
        self.names = list(ctx.names)
        self.subnets, widths = subnets(params, ctx, lambda hidden: hidden // 2)
        o = params.output_dim or ctx.num_outputs
        self.factors = nn.ParameterDict({m: nn.Parameter(torch.empty(params.rank, widths[m] + 1, o)) for m in self.names})
        self.fusion_weights = nn.Parameter(torch.empty(1, params.rank))
        self.fusion_bias = nn.Parameter(torch.zeros(1, o))
        for f in self.factors.values():
            xavier_normal_(f)
        xavier_normal_(self.fusion_weights)
        self.out_dim = o
        # Why this order: float products are not associative; MMSA multiplies audio · video · text, and
        # multiplying in that order keeps the two implementations equal to round-off (gradients included)
        rank = {"audio": 0, "vision": 1, "text": 2}
        self.product_order = sorted(self.names, key=lambda m: rank.get(m, 3))

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        zy = None
        for m in self.product_order:
            h = self.subnets[m](seqs[m], valid[m])  # (B, k_m)
            h1 = torch.cat((torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device), h), dim=1)  # (B, k_m + 1)
            f = torch.matmul(h1, self.factors[m])  # (r, B, o)
            zy = f if zy is None else zy * f
        out = torch.matmul(self.fusion_weights, zy.permute(1, 0, 2)).squeeze(1) + self.fusion_bias  # (B, o)
        return FuserOutput(out, {})
