r"""Order-aware relaxed OT: each frame's mass goes to anchor tokens along a soft monotone path.

(Registered as ``order_ot``; the kernel is :func:`~mmcore_plugin_ot.monotone.monotone_marginals`.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmcore.protocols import BuildContext

from ._anchored import AnchoredAligner
from ._costs import cosine_cost, sqeuclidean_cost
from ._masks import uniform_weights
from .monotone import monotone_marginals
from .params import OrderOTParams


class OrderOTAligner(AnchoredAligner):
    r"""Content + temporal order: relaxed OT whose plan is the marginal of a soft monotone alignment.

    $$P_m = \gamma_m \operatorname{diag}(b_m),\qquad
      \gamma_{ij} = \Pr(z_j = i),\qquad
      \Pr(z) \propto \exp\Big(-\tfrac{1}{\varepsilon}\sum_{j} C_m(z_j, j) - \lambda\,\Pi(z)\Big),
      \qquad \tilde X_m = \operatorname{diag}(P_m\mathbf 1)^{-1} P_m X_m$$

    where $z \in \{0..T_a-1\}^{T_m}$ assigns every frame of $X_m$ (T_m, d) to an anchor token,
    $C_m$ (T_a, T_m) is the cosine (or squared Euclidean / d) cost, $b_m = \mathbf 1/T_m$,
    $\varepsilon$ = ``reg``, $\lambda$ = ``order`` and $\Pi(z)$ counts the anchor tokens skipped
    (before the first frame, between consecutive frames, after the last) and the steps back
    (see :mod:`mmcore_plugin_ot.monotone`). The plan's columns sum to $1/T_m$ (each frame's mass,
    as in AlignMamba's relaxed OT, Eq. 4); its rows are each token's expected share of the frames.

    Limits: $\lambda = 0$ gives the entropic relaxed-OT plan $P_{ij} = b_j\,\mathrm{softmax}_i(-C_{ij}/\varepsilon)$
    (content only; $\varepsilon \to 0$ is ``relaxed_ot``'s argmin plan); $\lambda \to \infty$ keeps the
    left-to-right paths that visit every token in order (each frame stays or advances by one), and with
    $\varepsilon \to \infty$ as well the plan is the uniform mixture of those paths — the identity
    when $T_m = T_a$, centrally symmetric about the diagonal otherwise (interior rows peak within one
    frame of the proportional prior's; the first and last token at the first and last frame).

    Reference: content cost as AlignMamba (arXiv 2412.00833, §3.2, Eq. 3-4, relaxed OT); the order
    term as in order-preserving OT (Su & Hua, CVPR 2017, OPW), here as a path prior instead of a
    cell prior; marginals by forward-backward (Rabiner 1989) as in soft-DTW/differentiable DP
    (Cuturi & Blondel, ICML 2017; Mensch & Blondel, ICML 2018).
    Notation: ε is ``reg``, λ is ``order``; $T_a$, $T_m$ are each instance's valid lengths.
    Gradients: through the forward-backward recursions into the cost (both $X_a$ and $X_m$), into
    $\log\lambda$ when ``learn_order``, and through the projection into $X_m$.
    Deviations: OPW puts its order terms on the cells of a balanced Sinkhorn plan; a cell prior is
    a soft band and cannot express "frame j+1 goes to the same token as frame j or to the next",
    which is what disambiguates repeated words. The defaults (ε = 0.1 as ``sinkhorn``, λ = 10) are
    mmcore's, picked on ``experiments/order_alignment.py --sweep --seed 1``; no paper gives them.
    Shapes, Args, Raises: as :class:`~mmcore_plugin_ot._anchored.AnchoredAligner`, ``params`` being
    :class:`~mmcore_plugin_ot.params.OrderOTParams`; ``alignment_plans()[m]`` is $P_m$ (B, T_a, T_m).
    """

    def __init__(self, params: OrderOTParams, ctx: BuildContext):
        super().__init__(params.anchor, ctx)
        self.cost_kind, self.reg, self.normalize = params.cost, params.reg, params.normalize
        if params.learn_order:
            self.log_order = nn.Parameter(torch.tensor(math.log(params.order)))
        else:
            self.register_buffer("log_order", None)
            self.order = params.order

    def order_strength(self) -> Tensor | float:
        """λ: ``exp(log_order)`` when learned, else the fixed ``order``."""
        return self.log_order.exp() if self.log_order is not None else self.order

    def plan(self, xa: Tensor, va: Tensor, xm: Tensor, vm: Tensor) -> Tensor:
        """$P_m$: (B, T_a, T_m), columns summing to 1/T_m on valid frames, zero on padding."""
        cost = cosine_cost(xa, xm) if self.cost_kind == "cosine" else sqeuclidean_cost(xa, xm)  # (B, T_a, T_m)
        lam = self.order_strength()
        if isinstance(lam, Tensor):
            lam = lam.to(cost.dtype)
        gamma = monotone_marginals(-cost / self.reg, va, vm, lam).gamma  # (B, T_a, T_m), columns sum to 1
        return gamma * uniform_weights(vm, cost.dtype).unsqueeze(1)  # (B, T_a, T_m)
