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

import warnings

import torch
from torch import Tensor

from mmcore.protocols import BuildContext

from ._anchored import AnchoredAligner
from ._costs import cosine_cost
from ._masks import uniform_weights
from .params import RelaxedOTParams, SinkhornParams
from .sinkhorn_aligner import entropic_plan


class DeprecatedOptionWarning(FutureWarning):
    """A spec option that still works as before but is deprecated; the message names its replacement.

    Why a ``FutureWarning``: the spec's author is an end user, and Python hides ``DeprecationWarning``
    outside ``__main__`` (so ``mmcore run`` would never show it).
    """


def as_sinkhorn(params: RelaxedOTParams) -> SinkhornParams:
    """The ``sinkhorn`` params that compute what ``relaxed_ot`` with ``plan: entropic`` computes (plan and output)."""
    return SinkhornParams(anchor=params.anchor, cost="cosine", reg=params.reg, max_iter=params.max_iter,
                          tol=params.tol, normalize=params.normalize)


class RelaxedOTAligner(AnchoredAligner):
    r"""Relaxed-OT token alignment of every modality onto the anchor's time axis (AlignMamba §3.2).

    $$\tilde X_m = M_m^\top X_m,\qquad M_m(i, j) = \tfrac{1}{T_m}\,[\,j = \arg\min_{j'} C_m(i, j')\,]$$

    (see the module docstring for every symbol). ``plan: entropic`` is deprecated: it replaces the
    relaxed plan by the balanced entropic plan $P$ of Eq. 1-3 (row sums $1/T_m$, column sums $1/T_a$,
    regularisation ``reg``), which is the ``sinkhorn`` aligner with ``cost: cosine`` and the same
    ``normalize``, ``reg``, ``max_iter`` and ``tol`` (:func:`as_sinkhorn`): it runs that aligner's
    :func:`~mmcore_plugin_ot.sinkhorn_aligner.entropic_plan`, so plan and output are identical, and
    warns (:class:`DeprecatedOptionWarning`) with the replacement spec.

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
    Shapes, Args, Raises: as :class:`~mmcore_plugin_ot._anchored.AnchoredAligner`, ``params`` being
    :class:`~mmcore_plugin_ot.params.RelaxedOTParams`; ``alignment_plans()[m]`` is $M_m^\top$ (B, T_a, T_m).
    Warns:
        DeprecatedOptionWarning: with ``plan: entropic``, naming the ``sinkhorn`` spec to use instead.
    """

    def __init__(self, params: RelaxedOTParams, ctx: BuildContext):
        super().__init__(params.anchor, ctx)
        self.normalize = params.normalize
        #: the sinkhorn params this aligner computes with (plan: entropic), else None
        self.entropic = as_sinkhorn(params) if params.plan == "entropic" else None
        if self.entropic is not None:
            given = self.entropic.model_dump(mode="json", exclude_defaults=True)
            shown = ", params: {" + ", ".join(f"{k}: {v}" for k, v in given.items()) + "}" if given else ""
            warnings.warn("relaxed_ot: plan: entropic is deprecated; it is the sinkhorn aligner with cosine cost "
                          f"(the same plan and output): use aligner: {{name: sinkhorn{shown}}}",
                          DeprecatedOptionWarning, stacklevel=2)

    def plan(self, xa: Tensor, va: Tensor, xm: Tensor, vm: Tensor) -> Tensor:
        """$M_m^\\top$ (relaxed) or $P^\\top$ (entropic): (B, T_a, T_m), zero on padding."""
        if self.entropic is not None:
            return entropic_plan(xa, va, xm, vm, self.entropic)
        both = (va.any(1) & vm.any(1)).unsqueeze(1)  # (B, 1): an instance with an empty side moves nothing
        with torch.no_grad():  # the argmin has no gradient: do not keep the cost's graph
            cost = cosine_cost(xa, xm).masked_fill(~va.unsqueeze(2), float("inf"))  # (B, T_a, T_m)
            nearest = cost.argmin(1, keepdim=True)  # (B, 1, T_m): anchor token of each frame (first on ties)
            w = (uniform_weights(vm, cost.dtype) * both).unsqueeze(1)  # (B, 1, T_m): 1/T_m on valid frames
            return torch.zeros_like(cost).scatter_(1, nearest, w)  # (B, T_a, T_m)
