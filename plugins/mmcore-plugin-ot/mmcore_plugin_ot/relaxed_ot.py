r"""AlignMamba's relaxed-OT local alignment: every frame is sent to its nearest anchor token.

$$C_{ij} = 1 - \frac{x^m_i \cdot x^a_j}{\lVert x^m_i\rVert\,\lVert x^a_j\rVert},\qquad
  M_{ij} = \begin{cases}\tfrac{1}{T_m} & j = \arg\min_{j'} C_{ij'}\\ 0 & \text{otherwise}\end{cases},\qquad
  \tilde X_m = M^\top X_m \in \mathbb{R}^{T_a \times d}$$

where $X_m \in \mathbb{R}^{T_m \times d}$ is a non-anchor modality (audio, vision), $X_a \in
\mathbb{R}^{T_a \times d}$ the anchor (language), $C \in [0, 2]^{T_m \times T_a}$ the cosine cost and
$M \in \mathbb{R}_{\ge 0}^{T_m \times T_a}$ the relaxed plan: the solution of OT with only the
outgoing constraint $M\mathbf 1 = \tfrac{1}{T_m}\mathbf 1$ kept (Eq. 4), so anchor token $j$ receives
$\tilde X_{m,j} = \tfrac{1}{T_m}\sum_{i:\ \arg\min C_{i\cdot} = j} x^m_i$ and 0 when no frame chose it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmcore.protocols import BuildContext

from ._anchored import AnchoredAligner
from ._costs import cosine_cost, mask_cost
from ._masks import uniform_weights
from .params import RelaxedOTParams
from .sinkhorn import sinkhorn_plan


class RelaxedOTAligner(AnchoredAligner):
    r"""Relaxed-OT token alignment of every modality onto the anchor's time axis (AlignMamba §3.2).

    $$\tilde X_m = M_m^\top X_m,\qquad M_m(i, j) = \tfrac{1}{T_m}\,[\,j = \arg\min_{j'} C_m(i, j')\,]$$

    (see the module docstring for every symbol). With ``plan: entropic`` the relaxed plan is
    replaced by the balanced entropic plan $P$ of Eq. 1-3 (row sums $1/T_m$, column sums $1/T_a$,
    regularisation ``reg``), solved by the batched log-domain :func:`~mmcore_plugin_ot.sinkhorn_plan`.

    Reference: AlignMamba (Li et al., arXiv 2412.00833), §3.2, Eq. 1-6 (cost Eq. 3, relaxed plan
    Eq. 5, projection Eq. 6); the relaxation follows Kusner et al. 2015 (relaxed word mover's distance).
    Notation: the paper's $M_{v2l}$ is $M_m$ with $m$ = vision; $T_m$, $T_a$ are the **valid** lengths
    of each instance (padding is excluded); $X_l$ is ``seqs[anchor]``.
    Gradients: the argmin is piecewise constant in $C$, so no gradient flows through the plan;
    $\partial \tilde X_m / \partial X_m = M_m^\top$ carries the task gradient to $X_m$ (and so to the
    encoders). The aligner has no parameters. With ``plan: entropic``, gradients also flow through
    the Sinkhorn iterations into the cost, hence into both $X_m$ and $X_a$.
    Deviations: ``normalize: barycentric`` (not the default) divides by the mass $M^\top \mathbf 1$
    each anchor token received, i.e. the mean of its frames instead of $1/T_m$ times their sum.
    Ties in the argmin go to the earliest anchor token.
    Shapes: seqs[anchor] (B, T_a, d), seqs[m] (B, T_m, d) -> every output (B, T_a, d) with the
    anchor's valid mask; ``alignment_plans()[m]`` is $M_m^\top$ (B, T_a, T_m).

    Args:
        params: :class:`~mmcore_plugin_ot.params.RelaxedOTParams`.
        ctx: the build context (the anchor must be one of its modalities).
    Raises:
        ValueError: when the anchor is not a modality, or the inputs disagree on B or d.
    """

    def __init__(self, params: RelaxedOTParams, ctx: BuildContext):
        super().__init__(params.anchor, ctx)
        self.kind, self.normalize = params.plan, params.normalize
        self.reg, self.max_iter, self.tol = params.reg, params.max_iter, params.tol

    def plan(self, xa: Tensor, va: Tensor, xm: Tensor, vm: Tensor) -> Tensor:
        """$M_m^\\top$ (relaxed) or $P^\\top$ (entropic): (B, T_a, T_m), zero on padding."""
        both = (va.any(1) & vm.any(1)).unsqueeze(1)  # (B, 1): an instance with an empty side moves nothing
        if self.kind == "entropic":
            cost = mask_cost(cosine_cost(xa, xm), va, vm)  # (B, T_a, T_m), +inf on padding
            a = uniform_weights(va, cost.dtype) * both  # (B, T_a)
            b = uniform_weights(vm, cost.dtype) * both  # (B, T_m)
            return sinkhorn_plan(a, b, cost, self.reg, max_iter=self.max_iter, tol=self.tol).plan
        with torch.no_grad():  # the argmin has no gradient: do not keep the cost's graph
            cost = cosine_cost(xa, xm).masked_fill(~va.unsqueeze(2), float("inf"))  # (B, T_a, T_m)
            nearest = cost.argmin(1, keepdim=True)  # (B, 1, T_m): anchor token of each frame (first on ties)
            w = (uniform_weights(vm, cost.dtype) * both).unsqueeze(1)  # (B, 1, T_m): 1/T_m on valid frames
            return torch.zeros_like(cost).scatter_(1, nearest, w)  # (B, T_a, T_m)
