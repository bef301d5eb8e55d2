"""The mmcore hook: registers the baselines (imported lazily, so listing never imports torch)."""

from mmcore import hookimpl, lazy

from .params import EFLSTMParams, LFDNNParams, LMFParams, MFNParams, MmsaOutputParams, TFNParams

_PKG = "mmcore_plugin_baselines"


@hookimpl
def register_components(register):
    register("fuser", "tfn", lazy(f"{_PKG}.tfn", "TFNFuser"), TFNParams)
    register("fuser", "lmf", lazy(f"{_PKG}.lmf", "LMFFuser"), LMFParams)
    register("fuser", "lf_dnn", lazy(f"{_PKG}.lf_dnn", "LFDNNFuser"), LFDNNParams)
    register("fuser", "ef_lstm", lazy(f"{_PKG}.ef_lstm", "EFLSTMFuser"), EFLSTMParams)
    register("fuser", "mfn", lazy(f"{_PKG}.mfn", "MFNFuser"), MFNParams)
    register("head", "mmsa_output", lazy(f"{_PKG}.mmsa_output", "MmsaOutputHead"), MmsaOutputParams)
