"""The mmcore hook: registers the reconstruction imputer (imported lazily, so listing never imports torch)."""

from mmcore import hookimpl, lazy

from .params import MambaReconstructionParams

MMCORE_PLUGIN_API = "1.0"  # the mmcore plugin API this plugin targets (mmcore.hookspecs.PLUGIN_API)


@hookimpl
def register_components(register):
    # `recon` = Σ_m α_m L_rec(m); MGMR-Net's Eq. for L adds it with weight 1 (α_m carry the balance)
    register("imputer", "mamba_reconstruction", lazy("mmcore_plugin_recon.mamba_reconstruction",
                                                     "MambaReconstructionImputer"),
             MambaReconstructionParams, aux_losses={"recon": 1.0})
