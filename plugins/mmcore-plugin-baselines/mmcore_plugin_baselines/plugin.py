"""The mmcore hook: registers the baselines (imported lazily, so listing never imports torch)."""

from mmcore import hookimpl, lazy

from .params import (EFLSTMParams, LFDNNParams, LMFParams, MFMParams, MFNParams, MISAParams, MmsaMultParams,
                     MmsaOutputParams, SelfMMParams, TFNParams)

_PKG = "mmcore_plugin_baselines"
MMCORE_PLUGIN_API = "1.0"  # the mmcore plugin API this plugin targets (mmcore.hookspecs.PLUGIN_API)


@hookimpl
def register_components(register):
    register("fuser", "tfn", lazy(f"{_PKG}.tfn", "TFNFuser"), TFNParams)
    register("fuser", "lmf", lazy(f"{_PKG}.lmf", "LMFFuser"), LMFParams)
    register("fuser", "lf_dnn", lazy(f"{_PKG}.lf_dnn", "LFDNNFuser"), LFDNNParams)
    register("fuser", "ef_lstm", lazy(f"{_PKG}.ef_lstm", "EFLSTMFuser"), EFLSTMParams)
    register("fuser", "mfn", lazy(f"{_PKG}.mfn", "MFNFuser"), MFNParams)
    register("fuser", "mfm", lazy(f"{_PKG}.mfm", "MFMFuser"), MFMParams,
             # MMSA's MFM trainer: L1 + gen_loss (λ_x inside, so weight 1) + lda_mmd · mmd_loss, lda_mmd = 100 (MOSI)
             aux_losses={"mfm_reconstruction": 1.0, "mfm_mmd": 100.0})
    register("fuser", "misa", lazy(f"{_PKG}.misa", "MISAFuser"), MISAParams,
             # MMSA's MISA trainer, MOSI: diff_weight 0.1, sim_weight 0.3 (CMD, use_cmd_sim), recon_weight 1.0
             aux_losses={"misa_diff": 0.1, "misa_cmd": 0.3, "misa_recon": 1.0})
    register("fuser", "self_mm", lazy(f"{_PKG}.self_mm", "SelfMMFuser"), SelfMMParams,
             # MMSA's SELF_MM trainer sums the four tasks' losses: the head's L1 (fusion) + the unimodal ones
             aux_losses={"self_mm_unimodal": 1.0})
    register("fuser", "mmsa_mult", lazy(f"{_PKG}.mmsa_mult", "MmsaMultFuser"), MmsaMultParams)
    register("head", "mmsa_output", lazy(f"{_PKG}.mmsa_output", "MmsaOutputHead"), MmsaOutputParams)
