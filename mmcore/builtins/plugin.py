"""Registers the built-in components through the same hook as any plugin (llm's default_plugins)."""

from __future__ import annotations

from ..data import params as dp
from ..hookspecs import hookimpl
from ..registry import lazy
from . import params as p

MMCORE_PLUGIN_API = "1.0"  # the plugin API these registrations target (mmcore.hookspecs.PLUGIN_API)

_E, _A, _F, _I, _H, _L = ("mmcore.builtins." + m for m in ("encoders", "aligners", "fusers", "imputers", "heads",
                                                              "losses"))


@hookimpl
def register_components(register):
    register("encoder", "linear", lazy(_E, "LinearEncoder"), p.LinearParams)
    register("encoder", "conv1d", lazy(_E, "Conv1dEncoder"), p.Conv1dParams)
    register("encoder", "lstm", lazy(_E, "LSTMEncoder"), p.LSTMParams)
    register("encoder", "transformer", lazy(_E, "TransformerEncoder"), p.TransformerParams)
    register("aligner", "identity", lazy(_A, "IdentityAligner"), p.IdentityParams)
    register("fuser", "concat_pool", lazy(_F, "ConcatPoolFuser"), p.ConcatPoolParams)
    register("fuser", "mean", lazy(_F, "MeanFuser"), p.MeanFuserParams)
    register("fuser", "mult", lazy(_F, "MulTFuser"), p.MulTParams)
    register("imputer", "zero", lazy(_I, "ZeroImputer"), p.ZeroImputerParams)
    register("imputer", "mean", lazy(_I, "MeanImputer"), p.MeanImputerParams)
    register("head", "regression_mlp", lazy(_H, "RegressionMlpHead"), p.RegressionHeadParams)
    register("head", "classification_mlp", lazy(_H, "ClassificationMlpHead"), p.ClassificationHeadParams)
    register("loss", "supervised_contrastive", lazy(_L, "SupervisedContrastiveLoss"), p.SupervisedContrastiveParams)
    register("dataset", "synthetic", lazy("mmcore.data.synthetic", "SyntheticDataset"), dp.SyntheticParams)
    register("dataset", "npz", lazy("mmcore.data.npz", "NpzDataset"), dp.NpzParams)
    register("dataset", "mmsa", lazy("mmcore.data.mmsa", "MmsaDataset"), dp.MmsaParams)
