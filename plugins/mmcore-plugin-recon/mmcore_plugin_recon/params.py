"""Params of the gated Mamba reconstruction imputer (torch-free, so `mmcore validate|schema|plugins` stay light).

Defaults are MGMR-Net's (Yang et al., Electronics 14(15):3088, 2025) where the paper gives one — its
Table 2, CMU-MOSI column, the dataset closest in size to ICT-MMMO — else what was chosen and why.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmcore.params import ComponentParams
from mmcore_plugin_mamba.params import Backend  # torch-free, like this module


class MambaReconstructionParams(ComponentParams):
    """MGMR-Net Mamba-enhanced reconstruction: stacked Mamba layers, a LayerNorm gate, a projection (§3.4–3.5)."""

    depth: int = Field(
        1, ge=1, le=8,
        description="N, stacked Mamba layers per modality (§3.4). Table 2 gives the MOSI depth as {1,1} "
                    "without saying which entry is the reconstruction stack; 1 is used.")
    d_state: int = Field(
        12, ge=1, le=256, description="Mamba state size N per channel (Table 2, MOSI/MOSEI: 12).")
    expand: int = Field(
        4, ge=1, le=8, description="Mamba expansion E / d_model (Table 2, MOSI/MOSEI: 4).")
    d_conv: int = Field(
        4, ge=1, le=8, description="Width of the Mamba block's causal depthwise convolution (not in the paper; "
                                   "the Mamba default 4).")
    bidirectional: bool = Field(
        False, description="Not in the paper (False = its unidirectional stack): add a right-to-left Mamba pass "
                           "per layer and average the two, so a masked token is reconstructed from both sides.")
    gate: Literal["vector", "matrix"] = Field(
        "vector", description="Γ = σ(W_g · LayerNorm(X)). vector: W_g ∈ R^d as the paper states, one gate per "
                              "token shared by its features; matrix: W_g ∈ R^{d×d}, one gate per feature.")
    alpha: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="α_m, weight of modality m's reconstruction loss (§3.5); the paper gives no values. "
                    "Modalities not listed get default_alpha; keys must be declared modalities.")
    default_alpha: float = Field(
        1.0, ge=0, description="α_m of every modality not listed in alpha.")
    beta: float = Field(
        1.0, gt=0, description="SmoothL1 threshold: quadratic below |x - y| < beta (§3.5 uses 1).")
    backend: Backend = Field(
        "auto", description="Selective-scan backend of the Mamba blocks: auto (mamba-ssm on CUDA, the C++ kernel "
                            "on CPU, else torch), torch, cpu_kernel or cuda (see mmcore-plugin-mamba).")

    def check_spec(self, spec) -> list[tuple[str, str]]:
        declared = list(spec.modalities)
        return [("alpha", f"alpha names modality {m!r}, which the spec does not declare "
                          f"(declared: {', '.join(declared)})") for m in self.alpha if m not in declared]

    def alpha_of(self, modality: str) -> float:
        """α_m for ``modality`` (``default_alpha`` when not listed)."""
        return self.alpha.get(modality, self.default_alpha)
