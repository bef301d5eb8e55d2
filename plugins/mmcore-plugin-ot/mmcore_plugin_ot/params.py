"""Params of the OT plugin's registered components (torch-free: `mmcore validate|schema` stay light).

Defaults are the papers' where they give one (AlignMamba arXiv 2412.00833, DecAlign arXiv 2503.11892
and its public code's configs); each field says where its default comes from when the papers are silent.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from mmcore.params import ComponentParams

Positive = Annotated[float, Field(gt=0)]

Anchor = Field("text", description="Modality whose time axis the others are aligned onto (AlignMamba: language).")

#: Largest multi-marginal cost tensor (K^M entries per problem) gmm_prototype_ot accepts.
MAX_JOINT_CELLS = 10**7


class RelaxedOTParams(ComponentParams):
    """Relaxed-OT token alignment onto an anchor modality (AlignMamba §3.2)."""

    modality_fields: ClassVar[tuple[str, ...]] = ("anchor",)

    anchor: str = Anchor
    plan: Literal["relaxed", "entropic"] = Field(
        "relaxed", description="relaxed: the paper's Eq. 5 (each frame to its nearest anchor token); entropic: "
                               "the balanced entropic Sinkhorn plan of Eq. 1-3 instead.")
    normalize: Literal["paper", "barycentric"] = Field(
        "paper", description="paper: X~ = M^T X as Eq. 6 (anchor token j gets (1/T_m) x the sum of its "
                             "frames); barycentric: divide by the mass M^T 1 each anchor token received (the "
                             "mean of its frames).")
    reg: float = Field(0.1, gt=0, description="entropic only: Sinkhorn regularisation, in cosine-cost units "
                                              "(cost in [0, 2]).")
    max_iter: int = Field(1000, ge=1, description="entropic only: Sinkhorn iteration cap (it stops at tol first).")
    tol: float = Field(1e-4, gt=0, description="entropic only: stop when the marginal L2 error is below this.")


class SinkhornParams(ComponentParams):
    """Entropic-OT soft alignment of every modality onto an anchor (barycentric projection)."""

    modality_fields: ClassVar[tuple[str, ...]] = ("anchor",)

    anchor: str = Anchor
    cost: Literal["cosine", "sqeuclidean"] = Field(
        "cosine", description="cosine: 1 - cos(x_i, y_j) in [0, 2]; sqeuclidean: ||x_i - y_j||^2 / d.")
    reg: float = Field(0.1, gt=0, description="Entropic regularisation epsilon, in cost units.")
    max_iter: int = Field(1000, ge=1, description="Sinkhorn iteration cap; it stops at tol first (a ConvergenceWarning "
                                                 "names the cap when it is hit).")
    tol: float = Field(1e-4, gt=0, description="Stop when the column-marginal L2 error is below this.")
    window: int | None = Field(
        None, ge=0, description="Band half-width K in steps of the shorter sequence: cells outside the band get "
                                "+inf cost (MM-Align's |i - j| <= K for equal lengths); null = no band.")


class MMDParams(ComponentParams):
    """Gaussian-kernel MMD^2 between modalities (AlignMamba §3.3 L_align)."""

    modality_fields: ClassVar[tuple[str, ...]] = ("anchor",)

    features: Literal["aligned", "encoded"] = Field(
        "aligned", description="aligned: the aligner's outputs (AlignMamba Eq. 10 compares aligned X~_m with X_l); "
                               "encoded: the encoders' outputs.")
    anchor: str = Anchor
    pairs: Literal["anchor", "all"] = Field(
        "anchor", description="anchor: sum over m != anchor of MMD^2(X_m, X_anchor) (Eq. 10); all: every "
                              "unordered pair.")
    estimator: Literal["biased", "unbiased"] = Field(
        "biased", description="biased: the V-statistic of Eq. 8 (>= 0); unbiased: the U-statistic (can be < 0).")
    sigma: tuple[Positive, ...] = Field(
        (), description="Fixed Gaussian bandwidths (kernels summed). The paper gives none.")
    median_scales: tuple[Positive, ...] = Field(
        (1.0,), description="Multiples of the median-heuristic bandwidth (kernels summed with those of sigma).")
    pool: Literal["tokens", "mean"] = Field(
        "tokens", description="tokens: MMD^2 between the token sets of each instance, averaged over the batch "
                              "(AlignMamba Eq. 7-8); mean: MMD^2 between the batch's mean-pooled vectors.")

    @model_validator(mode="after")
    def _check(self):
        if not self.sigma and not self.median_scales:
            raise ValueError("give at least one bandwidth: sigma: [1.0] and/or median_scales: [1.0]")
        return self

    def check_spec(self, spec) -> list[tuple[str, str]]:
        if len(spec.modalities) < 2:
            return [("anchor", f"mmd compares modalities; the spec declares only {list(spec.modalities)}")]
        return []


class GmmPrototypeOTParams(ComponentParams):
    """DecAlign: decoupling, GMM prototypes and multi-marginal OT, homogeneity losses."""

    modality_fields: ClassVar[tuple[str, ...]] = ("anchor",)

    anchor: str = Field("text", description="Modality whose tokens index the rows of alignment_plans() (plots only).")
    num_prototypes: int = Field(7, ge=1, le=64, description="K, Gaussian components per modality (DecAlign code: 7).")
    em_steps: int = Field(5, ge=1, le=100, description="EM steps per batch from the stored prototypes "
                                                       "(DecAlign code: 5).")
    em_grad_steps: int = Field(1, ge=1, description="How many of the last EM steps are differentiated (the others "
                                                    "run without autograd); <= em_steps.")
    var_floor: float = Field(1e-4, gt=0, description="Lower bound of every prototype variance (DecAlign code: "
                                                     "1e-4); also added to the variance that standardises the "
                                                     "homogeneity skewness.")
    prior_count: float = Field(1.0, gt=0, description="Pseudo-count pulling each M-step towards the stored "
                                                      "prototype (keeps empty components finite), and Laplace "
                                                      "count of the weights.")
    reg: float = Field(0.1, gt=0, description="Multi-marginal entropic regularisation, relative to the largest "
                                              "prototype cost (DecAlign code: lambda_ot = 0.1).")
    max_iter: int = Field(1000, ge=1, description="Multi-marginal Sinkhorn sweep cap (a 7^3 sweep takes ~0.1 ms "
                                                  "on a CPU).")
    tol: float = Field(1e-5, gt=0, description="Stop when every marginal's L2 error is below this.")
    decoupling: Literal["cosine", "squared_cosine"] = Field(
        "cosine", description="cosine: Eq. 1 as written (minimised at cos = -1); squared_cosine: cos^2 (minimised "
                              "at orthogonality).")
    mmd_sigma: float | None = Field(None, gt=0, description="Bandwidth of the homogeneity MMD; null = median "
                                                            "heuristic.")
    seed: int = Field(0, description="Seed of the local generator that picks the first prototypes.")

    @model_validator(mode="after")
    def _check(self):
        if self.em_grad_steps > self.em_steps:
            raise ValueError(f"em_grad_steps={self.em_grad_steps} must be <= em_steps={self.em_steps}")
        return self

    def check_spec(self, spec) -> list[tuple[str, str]]:
        M = len(spec.modalities)
        if self.num_prototypes ** M > MAX_JOINT_CELLS:
            return [("num_prototypes", f"num_prototypes={self.num_prototypes} with {M} modalities gives a "
                                       f"{self.num_prototypes}^{M}-cell multi-marginal plan (> {MAX_JOINT_CELLS:.0e}); "
                                       "lower num_prototypes")]
        return []
