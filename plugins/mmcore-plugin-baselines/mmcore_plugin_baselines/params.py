"""Params of the baseline components (torch-free, so `mmcore validate|schema|plugins` stay light).

Defaults are MMSA 2.2.1's (``MMSA/config/config_regression.json``, ``datasetParams.mosi`` of each model —
CMU-MOSI is the dataset closest in size to ICT-MMMO). MMSA lists per-modality values in the order
(text, audio, vision); here they are dicts keyed by modality name, so a spec with any subset of
modalities (ICT-MMMO has audio + vision only) can use them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmcore.params import ComponentParams

Prob = Annotated[float, Field(ge=0.0, lt=1.0)]
Width = Annotated[int, Field(ge=1, le=4096)]


def _dims(text: int, audio: int, vision: int) -> dict[str, int]:
    return {"text": text, "audio": audio, "vision": vision}


class _SubnetParams(ComponentParams):
    """Shared by TFN, LMF and LF-DNN: one sub-network per modality before fusion."""

    sequence_modalities: list[str] = Field(
        default_factory=lambda: ["text"],
        description="Modalities read by MMSA's TextSubNet (an LSTM whose final state goes through a linear "
                    "layer); every other modality goes through MMSA's SubNet (time average, BatchNorm, "
                    "dropout, three ReLU layers). MMSA: text only.")
    hidden_dims: dict[str, Width] = Field(
        default_factory=lambda: _dims(128, 32, 128),
        description="Hidden size of each modality's sub-network (MMSA hidden_dims, text/audio/vision). "
                    "Every modality of the spec needs an entry.")
    dropouts: dict[str, Prob] = Field(
        default_factory=lambda: {"text": 0.3, "audio": 0.3, "vision": 0.3},
        description="Dropout of each modality's sub-network (MMSA dropouts[:3]; a 1-layer TextSubNet ignores "
                    "it, as in MMSA). Missing modalities get 0.")
    post_fusion_dropout: Prob = Field(0.5, description="Dropout on the fused vector (MMSA dropouts[3]).")

    modality_fields = ("sequence_modalities",)


class TFNParams(_SubnetParams):
    """Tensor Fusion Network (Zadeh et al., EMNLP 2017); MMSA's TFN defaults for MOSI."""

    lstm_out: Width = Field(32, description="Output size of the TextSubNet (MMSA text_out).")
    post_fusion_dim: Width = Field(64, description="Width of the two post-fusion ReLU layers (MMSA post_fusion_dim).")


class LMFParams(_SubnetParams):
    """Low-rank Multimodal Fusion (Liu et al., ACL 2018); MMSA's LMF defaults for MOSI."""

    hidden_dims: dict[str, Width] = Field(
        default_factory=lambda: _dims(128, 16, 128),
        description="Hidden size of each modality's sub-network (MMSA hidden_dims); a TextSubNet outputs "
                    "hidden // 2 (MMSA text_out = text_hidden // 2).")
    post_fusion_dropout: Prob = Field(0.3, description="MMSA dropouts[3]; LMF defines but never applies it.")
    rank: Width = Field(3, description="Rank r of the modality-specific factors (MMSA rank).")
    output_dim: int | None = Field(
        None, ge=1, le=4096,
        description="Size of the fused output h; None = the task's outputs (1 for regression), as in MMSA, "
                    "where h is the prediction (use head mmsa_output with linear: false).")


class LFDNNParams(_SubnetParams):
    """Late fusion DNN (MMSA's LF_DNN); MMSA's defaults for MOSI."""

    hidden_dims: dict[str, Width] = Field(
        default_factory=lambda: _dims(128, 16, 128),
        description="Hidden size of each modality's sub-network (MMSA hidden_dims, text/audio/vision).")
    dropouts: dict[str, Prob] = Field(
        default_factory=lambda: {"text": 0.2, "audio": 0.2, "vision": 0.2},
        description="Dropout of each modality's sub-network (MMSA dropouts[:3]).")
    post_fusion_dropout: Prob = Field(0.2, description="Dropout on the concatenated vector (MMSA dropouts[3]).")
    lstm_out: Width = Field(256, description="Output size of the TextSubNet (MMSA text_out).")
    post_fusion_dim: Width = Field(128, description="Width of the two post-fusion ReLU layers (MMSA post_fusion_dim).")


class EFLSTMParams(ComponentParams):
    """Early-fusion LSTM (MMSA's EF_LSTM); MMSA's defaults for MOSI."""

    hidden_dim: Width = Field(128, description="LSTM hidden size and the size of the ReLU layer (MMSA hidden_dims).")
    num_layers: Annotated[int, Field(ge=1, le=16)] = Field(4, description="Stacked LSTM layers (MMSA num_layers).")
    dropout: Prob = Field(0.5, description="Dropout between LSTM layers and on the final state (MMSA dropout); "
                                           "give the same value to the head's dropout, as MMSA applies it again.")


class MFNParams(ComponentParams):
    """Memory Fusion Network (Zadeh et al., AAAI 2018); MMSA's MFN defaults for MOSI."""

    hidden_dims: dict[str, Width] = Field(
        default_factory=lambda: _dims(256, 32, 256),
        description="LSTHM hidden size per modality (MMSA hidden_dims, text/audio/vision).")
    mem_dim: Width = Field(400, description="Multi-view gated memory size (MMSA memsize).")
    att1_hidden: Width = Field(32, description="Hidden size of the Delta-memory attention network D_a (NN1Config.shapes).")
    att1_dropout: Prob = Field(0.2, description="Dropout in D_a (NN1Config.drop).")
    att2_hidden: Width = Field(64, description="Hidden size of the memory-update network D_u (NN2Config.shapes).")
    att2_dropout: Prob = Field(0.0, description="Dropout in D_u (NN2Config.drop).")
    gamma1_hidden: Width = Field(256, description="Hidden size of the retain gate D_γ1 (gamma1Config.shapes).")
    gamma1_dropout: Prob = Field(0.7, description="Dropout in D_γ1 (gamma1Config.drop).")
    gamma2_hidden: Width = Field(32, description="Hidden size of the update gate D_γ2 (gamma2Config.shapes).")
    gamma2_dropout: Prob = Field(0.5, description="Dropout in D_γ2 (gamma2Config.drop).")
    out_hidden: Width = Field(128, description="Width of the output ReLU layer (outConfig.shapes); the head's "
                                               "dropout is outConfig.drop (0.0).")


class MmsaOutputParams(ComponentParams):
    """The output layer MMSA's models end with."""

    linear: bool = Field(True, description="Apply the output Linear(in, outputs); false when the fuser's "
                                           "representation already is the prediction (LMF).")
    dropout: Prob = Field(0.0, description="Dropout before the output layer (EF-LSTM: its dropout 0.5; MFN: "
                                           "outConfig.drop 0.0).")
    output_range: tuple[float, float] | None = Field(
        None, description="Regression only: squash to (lo, hi) as lo + (hi - lo)·σ(z) (TFN: [-3, 3]); "
                          "None = unbounded.")
    loss: Literal["l1", "mse"] = Field("l1", description="Regression task loss (MMSA: L1Loss); classification "
                                                         "always uses cross-entropy.")
