"""Params of the built-in components (torch-free, so validation and schema need no torch)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..params import ComponentParams, NoParams

Pool = Literal["mean", "max", "last"]


class LinearParams(ComponentParams):
    """Per-token linear projection to d_model."""

    layer_norm: bool = Field(True, description="LayerNorm after the projection.")


class Conv1dParams(ComponentParams):
    """Temporal 1-D convolution (same length) to d_model, as MulT's input projection."""

    kernel_size: int = Field(3, ge=1, description="Convolution width in tokens (odd keeps it centred).")
    layers: int = Field(1, ge=1, le=8, description="Stacked conv layers (GELU between).")


class LSTMParams(ComponentParams):
    """(Bi)LSTM encoder over the valid prefix of each row."""

    layers: int = Field(1, ge=1, le=4, description="Stacked LSTM layers.")
    bidirectional: bool = Field(True, description="Run forward and backward; outputs are projected back to d_model.")


def heads_divide_d_model(heads: int, spec) -> list[tuple[str, str]]:
    d = spec.model.d_model
    return [] if d % heads == 0 else [("heads", f"heads={heads} must divide model.d_model={d}")]


class TransformerParams(ComponentParams):
    """Transformer encoder with sinusoidal positions and key-padding masks."""

    layers: int = Field(1, ge=1, le=12, description="Encoder layers.")
    heads: int = Field(4, ge=1, description="Attention heads; must divide d_model.")
    ff_mult: int = Field(2, ge=1, description="Feed-forward width as a multiple of d_model.")

    def check_spec(self, spec):
        return heads_divide_d_model(self.heads, spec)


class IdentityParams(NoParams):
    """Pass encoded sequences through unchanged."""


class ConcatPoolParams(ComponentParams):
    """Pool each modality over its valid tokens, concatenate, and project."""

    pool: Pool = Field("mean", description="How each sequence is pooled over its valid tokens.")
    hidden: int = Field(0, ge=0, description="Hidden width of the projection MLP (0 = 2*d_model).")


class MeanFuserParams(ComponentParams):
    """Average the pooled modality vectors (late fusion by averaging)."""

    pool: Pool = Field("mean", description="How each sequence is pooled over its valid tokens.")


class MulTParams(ComponentParams):
    """Cross-modal transformer (MulT-style) fuser."""

    layers: int = Field(2, ge=1, le=8, description="Cross-modal attention layers per (target, source) pair.")
    self_layers: int = Field(1, ge=0, le=8, description="Self-attention layers per target after the cross-modal ones.")
    heads: int = Field(4, ge=1, description="Attention heads; must divide d_model.")
    pool: Pool = Field("last", description="Pooling of each target stream (MulT takes the last token).")

    def check_spec(self, spec):
        return heads_divide_d_model(self.heads, spec)


class ZeroImputerParams(NoParams):
    """Missing modalities and masked tokens stay zero (the no-imputation baseline)."""


class MeanImputerParams(ComponentParams):
    """Fill missing modalities / masked tokens with the running mean of observed encoded tokens."""

    momentum: float = Field(0.01, gt=0, le=1, description="EMA momentum of the per-modality mean token.")


class RegressionHeadParams(ComponentParams):
    """MLP regression head."""

    head_task: ClassVar[str | None] = "regression"

    hidden: int = Field(0, ge=0, description="Hidden width (0 = no hidden layer, a linear head).")
    loss: Literal["l1", "mse", "smooth_l1"] = Field("l1", description="Task loss (MMSA uses L1 for regression).")


class ClassificationHeadParams(ComponentParams):
    """MLP classification head with cross-entropy."""

    head_task: ClassVar[str | None] = "classification"

    hidden: int = Field(0, ge=0, description="Hidden width (0 = no hidden layer, a linear head).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")


class SupervisedContrastiveParams(ComponentParams):
    """Supervised contrastive loss on the fused representation (DecAlign's contrastive training, CT)."""

    temperature: float = Field(0.1, gt=0, description="Temperature tau of the cosine logits (DecAlign code: "
                                                      "ct_temperature = 0.1; 0.07 in its SIMS config).")
    label_range: tuple[float, float] = Field(
        (-3.0, 3.0), description="Regression only: labels are clamped to [lo, hi] and rounded (half to even) to "
                                 "classes round(y) - lo, as DecAlign's code does on the [-3, 3] sentiment scale. "
                                 "Classification labels are the classes.")

    def check_spec(self, spec) -> list[tuple[str, str]]:
        lo, hi = self.label_range
        return [] if lo < hi else [("label_range", f"label_range must be [lo, hi] with lo < hi; got {[lo, hi]}")]
