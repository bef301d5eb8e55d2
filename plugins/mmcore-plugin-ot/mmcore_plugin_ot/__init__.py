"""mmcore-plugin-ot: optimal-transport alignment for mmcore (AlignMamba, DecAlign, MM-Align parts).

Registered components (see the README): aligners ``relaxed_ot``, ``sinkhorn``, ``order_ot``, ``gmm_prototype_ot``
and the loss ``mmd``; the hook lives in :mod:`mmcore_plugin_ot.plugin`.

The kernels are re-exported here but imported on first attribute access (PEP 562), so importing
the package — which ``mmcore plugins`` does to reach the hook — does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcore import lazy_package

__version__ = "0.1.0"

_EXPORTS = {  # public name -> submodule, grouped by submodule
    **dict.fromkeys(("ConvergenceWarning", "SinkhornResult", "sinkhorn_plan", "sinkhorn_cost"), "sinkhorn"),
    **dict.fromkeys(("MultiMarginalResult", "multimarginal_sinkhorn_plan"), "multimarginal"),
    **dict.fromkeys(("mmd2", "mmd2_pooled", "median_sigma"), "mmd"),
    **dict.fromkeys(("bures_wasserstein_squared", "bures_wasserstein_squared_diag", "spd_sqrt"), "gaussian"),
    **dict.fromkeys(("MonotoneResult", "monotone_marginals"), "monotone"),
    "uniform_weights": "_masks",
}

if TYPE_CHECKING:  # what static tools see; at runtime __getattr__ below imports on demand
    from ._masks import uniform_weights as uniform_weights
    from .gaussian import bures_wasserstein_squared as bures_wasserstein_squared
    from .gaussian import bures_wasserstein_squared_diag as bures_wasserstein_squared_diag
    from .gaussian import spd_sqrt as spd_sqrt
    from .mmd import median_sigma as median_sigma
    from .mmd import mmd2 as mmd2
    from .mmd import mmd2_pooled as mmd2_pooled
    from .monotone import MonotoneResult as MonotoneResult
    from .monotone import monotone_marginals as monotone_marginals
    from .multimarginal import MultiMarginalResult as MultiMarginalResult
    from .multimarginal import multimarginal_sinkhorn_plan as multimarginal_sinkhorn_plan
    from .sinkhorn import ConvergenceWarning as ConvergenceWarning
    from .sinkhorn import SinkhornResult as SinkhornResult
    from .sinkhorn import sinkhorn_cost as sinkhorn_cost
    from .sinkhorn import sinkhorn_plan as sinkhorn_plan


__all__, __getattr__, __dir__ = lazy_package(__name__, _EXPORTS, "__version__")
