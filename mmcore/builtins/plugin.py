"""Registers the built-in components through the same hook as any plugin (llm's default_plugins)."""

from __future__ import annotations

from ..data import params as dp
from ..hookspecs import hookimpl
from ..registry import lazy
from . import params as p

MMCORE_PLUGIN_API = "1.0"  # the plugin API these registrations target (mmcore.hookspecs.PLUGIN_API)

#: kind -> (its module in mmcore.builtins, {name: (class, params)})
COMPONENTS = {
    "encoder": ("encoders", {"linear": ("LinearEncoder", p.LinearParams), "conv1d": ("Conv1dEncoder", p.Conv1dParams),
                             "lstm": ("LSTMEncoder", p.LSTMParams),
                             "transformer": ("TransformerEncoder", p.TransformerParams)}),
    "aligner": ("aligners", {"identity": ("IdentityAligner", p.IdentityParams)}),
    "fuser": ("fusers", {"concat_pool": ("ConcatPoolFuser", p.ConcatPoolParams),
                         "mean": ("MeanFuser", p.MeanFuserParams), "mult": ("MulTFuser", p.MulTParams)}),
    "imputer": ("imputers", {"zero": ("ZeroImputer", p.ZeroImputerParams),
                             "mean": ("MeanImputer", p.MeanImputerParams)}),
    "head": ("heads", {"regression_mlp": ("RegressionMlpHead", p.RegressionHeadParams),
                       "classification_mlp": ("ClassificationMlpHead", p.ClassificationHeadParams)}),
    "loss": ("losses", {"supervised_contrastive": ("SupervisedContrastiveLoss", p.SupervisedContrastiveParams)}),
}


@hookimpl
def register_components(register):
    for kind, (module, components) in COMPONENTS.items():
        for name, (cls, params) in components.items():
            register(kind, name, lazy(f"mmcore.builtins.{module}", cls), params)
    register("dataset", "synthetic", lazy("mmcore.data.synthetic", "SyntheticDataset"), dp.SyntheticParams)
    register("dataset", "npz", lazy("mmcore.data.npz", "NpzDataset"), dp.NpzParams)
    register("dataset", "mmsa", lazy("mmcore.data.mmsa", "MmsaDataset"), dp.MmsaParams)
