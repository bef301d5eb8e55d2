"""Params of the attention aligner (torch-free, so `mmcore validate` stays light)."""

from typing import ClassVar

from pydantic import Field

from mmcore.params import ComponentParams


class AttentionAlignerParams(ComponentParams):
    """Soft cross-attention alignment of every modality onto an anchor's time axis."""

    modality_fields: ClassVar[tuple[str, ...]] = ("anchor",)  # mmcore checks it names a declared modality

    anchor: str = Field("text", description="Modality whose time axis the others are aligned onto.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of the attention scores.")
