"""The mmcore hook of the OT plugin: registrations only (classes load lazily, so no torch here)."""

from __future__ import annotations

from mmcore import hookimpl, lazy

from .params import GmmPrototypeOTParams, MMDParams, OrderOTParams, RelaxedOTParams, SinkhornParams

MMCORE_PLUGIN_API = "1.0"  # the mmcore plugin API this plugin targets (mmcore.hookspecs.PLUGIN_API)

_PKG = "mmcore_plugin_ot"


@hookimpl
def register_components(register):
    register("aligner", "relaxed_ot", lazy(f"{_PKG}.relaxed_ot", "RelaxedOTAligner"), RelaxedOTParams)
    register("aligner", "sinkhorn", lazy(f"{_PKG}.sinkhorn_aligner", "SinkhornAligner"), SinkhornParams)
    register("aligner", "order_ot", lazy(f"{_PKG}.order_ot", "OrderOTAligner"), OrderOTParams)
    register("aligner", "gmm_prototype_ot", lazy(f"{_PKG}.gmm_prototype_ot", "GmmPrototypeOTAligner"),
             GmmPrototypeOTParams,
             # DecAlign Eq. 13: L_task + L_dec + α L_hete + β L_homo, α = β = 0.05 (§4.3); L_hete = OT + calibration
             aux_losses={"decoupling": 1.0, "prototype_ot": 0.05, "prototype_calibration": 0.05, "homogeneity": 0.05})
    register("loss", "mmd", lazy(f"{_PKG}.mmd_loss", "MMDLoss"), MMDParams)
