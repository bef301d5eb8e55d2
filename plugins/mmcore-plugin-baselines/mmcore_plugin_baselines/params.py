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


def _mfn_fields(hidden_dims: tuple[int, int, int], memsize: int, nn1: tuple[int, float], nn2: tuple[int, float],
                gamma1: tuple[int, float], gamma2: tuple[int, float]) -> type[ComponentParams]:
    """The fields of an MFN (its LSTHMs and multi-view gated memory) with one MMSA config's defaults.

    Why a factory: MFN and MFM (whose encoder is an MFN) share these fields with different defaults. The
    arguments are MMSA's config entries: hidden_dims (text, audio, vision), memsize, and each network's
    ``Config`` as (shapes, drop).
    """

    class MFNFields(ComponentParams):
        hidden_dims: dict[str, Width] = Field(
            default_factory=lambda: _dims(*hidden_dims),
            description="LSTHM hidden size per modality (MMSA hidden_dims, text/audio/vision).")
        mem_dim: Width = Field(memsize, description="Multi-view gated memory size (MMSA memsize).")
        att1_hidden: Width = Field(nn1[0], description="Hidden size of the Delta-memory attention network D_a "
                                                       "(NN1Config.shapes).")
        att1_dropout: Prob = Field(nn1[1], description="Dropout in D_a (NN1Config.drop).")
        att2_hidden: Width = Field(nn2[0], description="Hidden size of the memory-update network D_u "
                                                       "(NN2Config.shapes).")
        att2_dropout: Prob = Field(nn2[1], description="Dropout in D_u (NN2Config.drop).")
        gamma1_hidden: Width = Field(gamma1[0], description="Hidden size of the retain gate D_γ1 "
                                                            "(gamma1Config.shapes).")
        gamma1_dropout: Prob = Field(gamma1[1], description="Dropout in D_γ1 (gamma1Config.drop).")
        gamma2_hidden: Width = Field(gamma2[0], description="Hidden size of the update gate D_γ2 "
                                                            "(gamma2Config.shapes).")
        gamma2_dropout: Prob = Field(gamma2[1], description="Dropout in D_γ2 (gamma2Config.drop).")

    return MFNFields


class MFNParams(_mfn_fields(hidden_dims=(256, 32, 256), memsize=400, nn1=(32, 0.2), nn2=(64, 0.0), gamma1=(256, 0.7),
                            gamma2=(32, 0.5))):
    """Memory Fusion Network (Zadeh et al., AAAI 2018); MMSA's MFN defaults for MOSI."""

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


class MmsaMultParams(ComponentParams):
    """Multimodal Transformer (Tsai et al., ACL 2019) as MMSA's ``MULT``; MMSA's defaults for MOSI."""

    dst_dim: Width = Field(50, description="Width of every projected stream and cross-modal transformer "
                                           "(MMSA dst_feature_dim_nheads[0]).")
    heads: Width = Field(10, description="Attention heads (MMSA dst_feature_dim_nheads[1]); must divide dst_dim "
                                         "and (M-1)·dst_dim.")
    layers: Annotated[int, Field(ge=1, le=32)] = Field(4, description="Layers of each cross-modal transformer "
                                                                     "(MMSA nlevels).")
    mem_layers: Annotated[int, Field(ge=1, le=32)] | None = Field(
        None, description="Layers of each self-attention (memory) transformer; None = MMSA's max(nlevels, 3).")
    kernel_sizes: dict[str, Annotated[int, Field(ge=1, le=64)]] = Field(
        default_factory=lambda: {"text": 5, "audio": 5, "vision": 5},
        description="Temporal convolution kernel per modality (MMSA conv1d_kernel_size_l/a/v); missing "
                    "modalities get 1. The convolution is skipped when d_model == dst_dim, as in MMSA.")
    input_dropouts: dict[str, Prob] = Field(
        default_factory=lambda: {"text": 0.5},
        description="Dropout on each modality's input sequence (MMSA text_dropout on text only); missing "
                    "modalities get 0.")
    attn_dropouts: dict[str, Prob] = Field(
        default_factory=lambda: {"text": 0.3, "audio": 0.2, "vision": 0.0},
        description="Attention dropout of a cross-modal transformer, by its source modality (MMSA attn_dropout, "
                    "attn_dropout_a, attn_dropout_v); missing modalities get 0.")
    mem_attn_dropout: Prob = Field(0.3, description="Attention dropout of the self-attention transformers "
                                                    "(MMSA uses attn_dropout for all three).")
    relu_dropout: Prob = Field(0.0, description="Dropout after the feed-forward ReLU (MMSA relu_dropout).")
    res_dropout: Prob = Field(0.0, description="Dropout on each residual branch (MMSA res_dropout).")
    embed_dropout: Prob = Field(0.2, description="Dropout on each transformer's scaled input (MMSA embed_dropout).")
    output_dropout: Prob = Field(0.5, description="Dropout inside the residual output block (MMSA output_dropout).")
    future_mask: bool = Field(True, description="MulT's attention mask: query i sees keys up to i + |n_k - n_q| "
                                                "(MMSA attn_mask, true).")


class MFMParams(_mfn_fields(hidden_dims=(128, 32, 128), memsize=64, nn1=(32, 0.7), nn2=(64, 0.0), gamma1=(32, 0.0),
                            gamma2=(64, 0.5))):
    """Multimodal Factorization Model (Tsai et al., ICLR 2019) as MMSA's ``MFM``; MMSA's defaults for MOSI.
    The MFN fields (hidden_dims to gamma2_dropout) are those of its MFN encoder."""

    zy_size: Width = Field(80, description="Size of the multimodal discriminative factor z_y (MMSA zy_size).")
    fy_size: Width = Field(64, description="Size of its decoded feature F_y (MMSA fy_size).")
    fy_dropout: Prob = Field(0.5, description="Dropout in z_y -> F_y (MMSA zy_to_fy_dropout).")
    z_sizes: dict[str, Width] = Field(
        default_factory=lambda: _dims(64, 80, 80),
        description="Size of each modality-specific generative factor z_m (MMSA zl_size, za_size, zv_size).")
    f_sizes: dict[str, Width] = Field(
        default_factory=lambda: _dims(32, 16, 64),
        description="Size of each decoded modality feature F_m (MMSA fl_size, fa_size, fv_size).")
    f_dropouts: dict[str, Prob] = Field(
        default_factory=lambda: {"text": 0.5, "audio": 0.7, "vision": 0.5},
        description="Dropout in z_m -> F_m (MMSA zl/za/zv_to_fl/fa/fv_dropout); missing modalities get 0.")
    recon_weights: dict[str, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: {"text": 0.5, "audio": 0.01, "vision": 0.5},
        description="Weight of each modality's reconstruction MSE inside mfm_reconstruction (MMSA lda_xl, lda_xa, "
                    "lda_xv); missing modalities get 1.")
    detach_targets: bool = Field(
        True, description="Reconstruct the fuser's inputs as constants (MMSA reconstructs its raw input features, "
                          "which have no gradient); false lets the reconstruction loss also pull on the encoders "
                          "through the targets.")


class MISAParams(ComponentParams):
    """MISA (Hazarika et al., ACM MM 2020) as MMSA's ``MISA`` after its text encoder; MMSA's defaults for MOSI."""

    utterance_modalities: list[str] = Field(
        default_factory=lambda: ["text"],
        description="Modalities averaged over their valid steps before projection (MMSA: text, the mean of its "
                    "BERT output); every other modality is read by MISA's two stacked bidirectional LSTMs.")
    hidden_size: Width = Field(128, description="Size of the shared and private codes (MMSA hidden_size).")
    dropout: Prob = Field(0.2, description="Dropout in the fusion layer (MMSA dropout).")
    transformer_heads: Width = Field(2, description="Heads of the 1-layer fusion transformer over the 2M codes "
                                                    "(MMSA: nhead=2, fixed).")
    transformer_ff: Width = Field(2048, description="Its feed-forward width (MMSA: torch's default 2048).")
    transformer_dropout: Prob = Field(0.1, description="Its dropout (MMSA: torch's default 0.1).")
    cmd_moments: Annotated[int, Field(ge=1, le=10)] = Field(5, description="Central moments matched by the CMD "
                                                                           "similarity loss (MMSA: 5).")

    modality_fields = ("utterance_modalities",)


class SelfMMParams(ComponentParams):
    """Self-MM (Yu et al., AAAI 2021) as MMSA's ``SELF_MM`` after its text encoder, with its unimodal label
    generation (ULGM); MMSA's defaults for MOSI."""

    utterance_modalities: list[str] = Field(
        default_factory=lambda: ["text"],
        description="Modalities read as one utterance vector of width d_model (MMSA: text, BERT's first-token "
                    "output); every other modality goes through MMSA's AuViSubNet (an LSTM whose final state "
                    "goes through dropout and a linear layer).")
    utterance_pooling: Literal["first", "mean"] = Field(
        "first", description="How an utterance modality becomes one vector: its first step (MMSA: BERT's [CLS] "
                             "output) or the mean over its valid steps (for encoders without a summary token).")
    lstm_hidden: dict[str, Width] = Field(
        default_factory=lambda: _dims(32, 16, 32),
        description="AuViSubNet LSTM hidden size per modality (MMSA a_lstm_hidden_size, v_lstm_hidden_size; text "
                    "is BERT in MMSA, so its entry is used only when text is not an utterance modality).")
    subnet_out: dict[str, Width] = Field(
        default_factory=lambda: _dims(32, 16, 32),
        description="AuViSubNet output size per modality (MMSA audio_out, video_out; text as lstm_hidden).")
    lstm_dropouts: dict[str, Prob] = Field(
        default_factory=lambda: {"audio": 0.0, "vision": 0.0},
        description="Dropout on the AuViSubNet's final state (MMSA a_lstm_dropout, v_lstm_dropout); missing "
                    "modalities get 0.")
    post_fusion_dim: Width = Field(128, description="Width of the fusion layers, the fusion feature of the ULGM "
                                                    "(MMSA post_fusion_dim).")
    post_fusion_dropout: Prob = Field(0.0, description="Dropout on the concatenated vector (MMSA post_fusion_dropout).")
    post_dims: dict[str, Width] = Field(
        default_factory=lambda: _dims(32, 16, 32),
        description="Width of each unimodal head's layers, the modality's ULGM feature (MMSA post_text_dim, "
                    "post_audio_dim, post_video_dim). Every modality of the spec needs an entry.")
    post_dropouts: dict[str, Prob] = Field(
        default_factory=lambda: {"text": 0.1, "audio": 0.1, "vision": 0.0},
        description="Dropout before each unimodal head (MMSA post_text_dropout, post_audio_dropout, "
                    "post_video_dropout); missing modalities get 0.")
    label_bound: Annotated[float, Field(gt=0.0)] = Field(
        3.0, description="Generated unimodal labels are clamped to [-label_bound, label_bound] (MMSA H).")
    exclude_zero: bool = Field(True, description="A sample with label 0 counts in neither the positive nor the "
                                                 "negative centre; false counts it as positive (MMSA excludeZero).")

    modality_fields = ("utterance_modalities",)
