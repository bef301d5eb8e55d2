"""mmcore-plugin-ot: optimal-transport alignment for mmcore (AlignMamba, DecAlign, MM-Align parts).

Registered components (see the README): aligners ``relaxed_ot``, ``sinkhorn``, ``order_ot``, ``gmm_prototype_ot``
and the loss ``mmd``; the hook lives in :mod:`mmcore_plugin_ot.plugin`.

The kernels are re-exported here but imported on first attribute access (PEP 562), so importing
the package — which ``mmcore plugins`` does to reach the hook — does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcore import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ConvergenceWarning": "sinkhorn",
    "SinkhornResult": "sinkhorn",
    "sinkhorn_plan": "sinkhorn",
    "sinkhorn_cost": "sinkhorn",
    "MultiMarginalResult": "multimarginal",
    "multimarginal_sinkhorn_plan": "multimarginal",
    "mmd2": "mmd",
    "mmd2_pooled": "mmd",
    "median_sigma": "mmd",
    "bures_wasserstein_squared": "gaussian",
    "bures_wasserstein_squared_diag": "gaussian",
    "spd_sqrt": "gaussian",
    "uniform_weights": "_masks",
    "MonotoneResult": "monotone",
    "monotone_marginals": "monotone",
}

__all__ = ["__version__", *_EXPORTS]

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


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)
