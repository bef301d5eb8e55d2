"""mmcore-plugin-adl: MM-Align's alignment dynamics learner (ADL) imputer for mmcore.

Registered component (see the README): imputer ``adl``; the hook lives in :mod:`mmcore_plugin_adl.plugin`.
The authors' computation (``reference: authors``) is :mod:`mmcore_plugin_adl.authors`.

The building blocks are re-exported here but imported on first attribute access (PEP 562), so
importing the package — which ``mmcore plugins`` does to reach the hook — does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcore import lazy_package

__version__ = "0.1.0"

_EXPORTS = {  # public name -> submodule, grouped by submodule
    "ADLImputer": "adl",
    **dict.fromkeys(("ADLParams", "AUTHORS_PRESET"), "params"),
    "AlignmentFitter": "fitter",
    **dict.fromkeys(("WindowGeometry", "window_geometry", "to_dense", "to_window"), "window"),
    **dict.fromkeys(("windowed_cost", "ot_targets"), "solver"),
    "decode": "decode",
    **dict.fromkeys(("fit_loss", "fit_loss_authors", "contrastive_loss"), "losses"),
}

if TYPE_CHECKING:  # what static tools see; at runtime __getattr__ below imports on demand
    from .adl import ADLImputer as ADLImputer
    from .decode import decode as decode
    from .fitter import AlignmentFitter as AlignmentFitter
    from .losses import contrastive_loss as contrastive_loss
    from .losses import fit_loss as fit_loss
    from .losses import fit_loss_authors as fit_loss_authors
    from .params import AUTHORS_PRESET as AUTHORS_PRESET
    from .params import ADLParams as ADLParams
    from .solver import ot_targets as ot_targets
    from .solver import windowed_cost as windowed_cost
    from .window import WindowGeometry as WindowGeometry
    from .window import to_dense as to_dense
    from .window import to_window as to_window
    from .window import window_geometry as window_geometry


__all__, __getattr__, __dir__ = lazy_package(__name__, _EXPORTS, "__version__")
