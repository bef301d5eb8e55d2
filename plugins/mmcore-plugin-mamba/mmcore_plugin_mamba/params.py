"""Params of the Mamba plugin's registered components (torch-free: `mmcore validate|schema` stay light).

Defaults are the papers' where they give one: MGMR-Net (Yang et al., Electronics 14(15):3088, 2025)
Table 2, CMU-MOSI column (state 12, expansion 4, depth {1, 1}); AlignMamba (Li et al., arXiv
2412.00833) gives no Mamba configuration, so its fuser takes the Mamba defaults of Gu & Dao
(arXiv:2312.00752; mamba-ssm: d_state 16, d_conv 4, expand 2). Each field says where its default
comes from.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from mmcore.params import ComponentParams

Backend = Literal["auto", "torch", "cpu_kernel", "cuda"]
Pool = Literal["mean", "max", "last"]

_BACKEND = ("Selective-scan backend: auto (mamba-ssm on CUDA, the C++ kernel on CPU, else torch), torch, "
            "cpu_kernel or cuda (see the README's backend table).")
_D_CONV = "Causal depthwise convolution width of each Mamba block (Mamba default 4; neither paper changes it)."


class InterleavedMambaParams(ComponentParams):
    """Interleave the streams in time-priority order, stacked Mamba layers, pool (AlignMamba §3.4)."""

    modality_fields: ClassVar[tuple[str, ...]] = ("order",)

    depth: int = Field(2, ge=1, le=24, description="Stacked pre-norm residual Mamba layers. AlignMamba says "
                                                   "'multiple Mamba layers' without a number: 2. MGMR-Net stage 2: "
                                                   "1 (MOSI), 2 (MOSEI).")
    d_state: int = Field(16, ge=1, le=256, description="SSM state size N (Mamba default 16; MGMR-Net: 12).")
    d_conv: int = Field(4, ge=1, le=16, description=_D_CONV)
    expand: int = Field(2, ge=1, le=8, description="Inner width E = expand * d_model (Mamba default 2; "
                                                   "MGMR-Net: 4).")
    pool: Pool = Field("mean", description="Pooling over the valid interleaved tokens: mean, max (MGMR-Net Eq. "
                                           "'F_final = max_t F[t]') or last (the last token, which the causal "
                                           "scan has run over everything). AlignMamba does not say: mean.")
    order: tuple[str, ...] | None = Field(
        None, description="Modality order within a time step. null: AlignMamba's (audio, vision, text), then "
                          "any other stream in the order the fuser receives them. A list puts those streams "
                          "first (each once), the rest follow.")
    unequal_lengths: Literal["pad", "resample", "error"] = Field(
        "pad", description="Streams of different lengths. pad: step t holds the streams whose row is still "
                           "valid at t (every token once; Eq. 11 exactly when lengths agree). resample: each "
                           "row's streams are stretched to its longest valid length by nearest-index "
                           "resampling (relative time; shorter streams repeat tokens). error: all streams "
                           "must have the same T (put an aligner such as relaxed_ot first).")
    modality_embedding: bool = Field(False, description="Add a learned vector per modality before interleaving "
                                                        "(not in the papers: tells the scan which stream a token "
                                                        "came from when rows are compacted).")
    backend: Backend = Field("auto", description=_BACKEND)

    @field_validator("order")
    @classmethod
    def _unique(cls, v):
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"order lists a modality twice: {list(v)}")
        return v


class BimambaTextCentricParams(ComponentParams):
    """MGMR-Net stage 1: text-centric bidirectional Mamba over each text–modality pair."""

    modality_fields: ClassVar[tuple[str, ...]] = ("anchor",)

    anchor: str = Field("text", description="The centre modality paired with every other one (MGMR-Net: text).")
    depth: int = Field(1, ge=1, le=24, description="Mamba layers per direction and branch (MGMR-Net Table 2, "
                                                   "MOSI: 1; MOSEI: 2).")
    d_state: int = Field(12, ge=1, le=256, description="SSM state size N (MGMR-Net Table 2, MOSI/MOSEI: 12).")
    d_conv: int = Field(4, ge=1, le=16, description=_D_CONV)
    expand: int = Field(4, ge=1, le=8, description="Inner width E = expand * d_model (MGMR-Net Table 2, "
                                                   "MOSI/MOSEI: 4).")
    pair: Literal["interleave", "concat", "shared"] = Field(
        "interleave", description="How a text–m branch sees its two streams. interleave: one sequence "
                                  "[m_1, t_1, m_2, t_2, ...] (time-priority, as stage 2); concat: [m_1..m_T, "
                                  "t_1..t_T]; shared: each stream on its own through the branch's shared layers "
                                  "(no token-level mixing). The paper does not pin this down; see the README.")
    share_directions: bool = Field(False, description="One set of weights for the forward and the flipped "
                                                      "pass (false: separate weights, as Vision Mamba's "
                                                      "bidirectional blocks).")
    backend: Backend = Field("auto", description=_BACKEND)

    def check_spec(self, spec) -> list[tuple[str, str]]:
        others = [m for m in spec.modalities if m != self.anchor]
        if self.anchor in spec.modalities and not others:
            return [("anchor", f"pairs the anchor {self.anchor!r} with other modalities, but the spec declares "
                               f"only {list(spec.modalities)}; add a modality or use aligner 'identity'")]
        return []


class MambaEncoderParams(ComponentParams):
    """Per-token linear projection to d_model, then a stack of Mamba layers over one modality."""

    depth: int = Field(1, ge=1, le=24, description="Stacked pre-norm residual Mamba layers.")
    d_state: int = Field(16, ge=1, le=256, description="SSM state size N (Mamba default 16).")
    d_conv: int = Field(4, ge=1, le=16, description=_D_CONV)
    expand: int = Field(2, ge=1, le=8, description="Inner width E = expand * d_model (Mamba default 2).")
    bidirectional: bool = Field(False, description="Average a forward and a time-flipped stack (Bi-Mamba) so "
                                                   "every output token sees the whole sequence.")
    backend: Backend = Field("auto", description=_BACKEND)
