"""The mmcore hook of the ADL plugin: registrations only (the class loads lazily, so no torch here)."""

from __future__ import annotations

from mmcore import hookimpl, lazy

from .params import ADLParams

MMCORE_PLUGIN_API = "1.0"  # the mmcore plugin API this plugin targets (mmcore.hookspecs.PLUGIN_API)


@hookimpl
def register_components(register):
    # MM-Align Alg. 1: the fitter step minimises L_fit alone (weight 1, its own step); the backbone
    # steps minimise L_main + λ L_con with λ = 0.1 (Appendix B, Table 7 grid {0.05, 0.1})
    register("imputer", "adl", lazy("mmcore_plugin_adl.adl", "ADLImputer"), ADLParams,
             aux_losses={"adl_fit": 1.0, "adl_con": 0.1})
