r"""Entropic-OT soft alignment of every modality onto an anchor, by barycentric projection.

(Registered as ``sinkhorn``; the module is not ``sinkhorn.py`` because that name is the kernel's.)
"""

from __future__ import annotations

import math

from torch import Tensor

from mmcore.protocols import BuildContext

from ._anchored import AnchoredAligner
from ._costs import cosine_cost, mask_cost, sqeuclidean_cost, window_band
from ._masks import uniform_weights
from .params import SinkhornParams
from .sinkhorn import sinkhorn_plan


class SinkhornAligner(AnchoredAligner):
    r"""Plain entropic-OT alignment of each modality onto the anchor's time axis.

    $$P_m^\star = \arg\min_{P \ge 0,\ P\mathbf 1 = a,\ P^\top\mathbf 1 = b_m}\ \langle P, C_m\rangle - \varepsilon H(P),
      \qquad \tilde X_m = \operatorname{diag}(a)^{-1} P_m^\star X_m$$

    where $X_m$ (T_m, d) is a non-anchor modality, $a = \mathbf 1/T_a$ and $b_m = \mathbf 1/T_m$ the
    uniform weights of the valid anchor tokens and frames, $C_m$ (T_a, T_m) the cost (cosine
    $1 - \cos(x^a_i, x^m_j)$ or $\lVert x^a_i - x^m_j\rVert^2/d$), set to $+\infty$ outside the band
    of half-width $K$ when ``window`` is given, $\varepsilon$ = ``reg`` and $H$ the entropy. Row $i$
    of $\tilde X_m$ is the $P^\star$-weighted mean of the frames transported to anchor token $i$
    (``normalize: barycentric``, the default); ``normalize: paper`` gives $P_m^\star X_m$ instead,
    that mean times $1/T_a$ (AlignMamba's Eq. 6 applied to this plan).

    Reference: Cuturi 2013 (Sinkhorn distances); barycentric projection as in Courty et al. 2017
    (OT for domain adaptation, TPAMI), §4; the band is MM-Align's context window (Han et al., EMNLP
    2022, §3.4, Eq. 7, $|i - j| \le K$), extended to unequal lengths (see :func:`~mmcore_plugin_ot._costs.window_band`).
    With the cosine cost and no window this is also AlignMamba's balanced plan (arXiv 2412.00833, §3.2,
    Eq. 1-3), which ``relaxed_ot`` with ``plan: entropic`` (deprecated) computes through :func:`entropic_plan`.
    Notation: ε is ``reg``, K is ``window``; $T_a$, $T_m$ are each instance's valid lengths.
    Gradients: through the unrolled Sinkhorn iterations into the cost (both $X_a$ and $X_m$) and
    through the projection into $X_m$. No parameters.
    Deviations: the squared Euclidean cost is divided by d so that ``reg`` does not depend on d_model.
    Shapes, Args, Raises: as :class:`~mmcore_plugin_ot._anchored.AnchoredAligner`, ``params`` being
    :class:`~mmcore_plugin_ot.params.SinkhornParams`; ``alignment_plans()[m]`` is $P_m^\star$ (B, T_a, T_m).
    Warns:
        ConvergenceWarning: from the kernel, when ``max_iter`` is reached above ``tol``.
    """

    def __init__(self, params: SinkhornParams, ctx: BuildContext):
        super().__init__(params.anchor, ctx)
        self.p, self.normalize = params, params.normalize

    def plan(self, xa: Tensor, va: Tensor, xm: Tensor, vm: Tensor) -> Tensor:
        """$P_m^\\star$: (B, T_a, T_m), rows summing to 1/T_a, columns to 1/T_m, zero on padding."""
        return entropic_plan(xa, va, xm, vm, self.p)


def entropic_plan(xa: Tensor, va: Tensor, xm: Tensor, vm: Tensor, p: SinkhornParams) -> Tensor:
    """The ``sinkhorn`` aligner's plan of one modality (also what ``relaxed_ot``'s deprecated ``plan: entropic`` runs).

    Shapes: xa (B, T_a, d), va (B, T_a), xm (B, T_m, d), vm (B, T_m) -> (B, T_a, T_m), rows summing to
    1/T_a, columns to 1/T_m, zero on padding.
    """
    cost = cosine_cost(xa, xm) if p.cost == "cosine" else sqeuclidean_cost(xa, xm)  # (B, T_a, T_m)
    if p.window is not None:
        cost = cost.masked_fill(~window_band(va, vm, p.window), math.inf)
    cost = mask_cost(cost, va, vm)
    both = (va.any(1) & vm.any(1)).unsqueeze(1)  # (B, 1): an instance with an empty side moves nothing
    a = uniform_weights(va, cost.dtype) * both  # (B, T_a)
    b = uniform_weights(vm, cost.dtype) * both  # (B, T_m)
    return sinkhorn_plan(a, b, cost, p.reg, max_iter=p.max_iter, tol=p.tol).plan
