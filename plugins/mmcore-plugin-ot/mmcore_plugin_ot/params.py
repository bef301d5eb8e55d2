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
        "relaxed", description="relaxed: the paper's Eq. 5 (each frame to its nearest anchor token); entropic "
                               "(deprecated): the balanced entropic plan of Eq. 1-3, i.e. the sinkhorn aligner "
                               "with cost: cosine and the same normalize, reg, max_iter, tol (use that instead).")
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
    normalize: Literal["paper", "barycentric"] = Field(
        "barycentric", description="barycentric: each anchor token gets the plan-weighted mean of its frames; "
                                   "paper: P X_m as relaxed_ot's Eq. 6 (that mean times the row mass 1/T_a).")


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


#: What ``reference: authors`` changes in gmm_prototype_ot when the field is not given explicitly.
AUTHORS_PRESET = {"max_iter": 50, "mmd_sigma": 1.0, "decoupling": "squared_cosine", "ot_loss": "entropic",
                  "ot_grad": "unrolled"}
#: Fields that only the stabilised aligner reads, and fields that only the authors' computation reads.
MMCORE_ONLY = ("em_grad_steps", "prior_count", "tol", "seed")
AUTHORS_ONLY = ("cost_reduction", "local_mahalanobis", "use_sequence_mask", "latent_dim")


class GmmPrototypeOTParams(ComponentParams):
    """DecAlign: decoupling, GMM prototypes and multi-marginal OT, homogeneity losses."""

    modality_fields: ClassVar[tuple[str, ...]] = ("anchor",)

    reference: Literal["mmcore", "authors"] = Field(
        "mmcore", description="mmcore: the stabilised aligner (persistent prototypes refit on tokens, log-domain OT "
                              "on the max-scaled cost, envelope gradients); authors: the computation of the "
                              "authors' code (taco-group/DecAlign 6fa8df9), equal to it to 1e-6 in float64 — "
                              "per-batch GMMs on pooled features, plain-domain Sinkhorn, latent distribution "
                              "encoders. It also changes the defaults of max_iter (50), mmd_sigma (1.0), ot_loss "
                              "(entropic) and ot_grad (unrolled). See docs/fidelity.md.")
    anchor: str = Field("text", description="Modality whose tokens index the rows of alignment_plans() (plots only).")
    num_prototypes: int = Field(7, ge=1, le=64, description="K, Gaussian components per modality (DecAlign code: 7).")
    em_steps: int = Field(5, ge=1, le=100, description="EM steps per batch (DecAlign code: gmm_em_iters = 5); mmcore "
                                                       "starts them from the stored prototypes, authors from the "
                                                       "batch.")
    em_grad_steps: int = Field(1, ge=1, description="mmcore only: how many of the last EM steps are differentiated "
                                                    "(the others run without autograd); <= em_steps. The authors "
                                                    "differentiate all of them.")
    var_floor: float = Field(1e-4, gt=0, description="Lower bound of every prototype variance (DecAlign code: "
                                                     "gmm_var_floor = 1e-4); mmcore also adds it to the variance "
                                                     "that standardises the homogeneity skewness.")
    prior_count: float = Field(1.0, gt=0, description="mmcore only: pseudo-count pulling each M-step towards the "
                                                      "stored prototype (keeps empty components finite), and Laplace "
                                                      "count of the weights. The authors' EM has no prior.")
    reg: float = Field(0.1, gt=0, description="Multi-marginal entropic regularisation (DecAlign code: lambda_ot = 0.1). "
                                              "mmcore: relative to the largest prototype cost; authors: in cost units.")
    max_iter: int = Field(1000, ge=1, description="Multi-marginal Sinkhorn sweeps: mmcore stops at tol first (a 7^3 "
                                                  "sweep takes ~0.1 ms on a CPU); authors runs exactly this many "
                                                  "(ot_num_iters = 50).")
    tol: float = Field(1e-5, gt=0, description="mmcore only: stop when every marginal's L2 error is below this.")
    ot_loss: Literal["transport", "entropic"] | None = Field(
        None, description="prototype_ot value: transport = <T, C> (the paper's L_OT); entropic = <T, C> + "
                          "reg * sum T (log T - 1) (the authors' code). null = transport (mmcore) / entropic (authors).")
    ot_grad: Literal["envelope", "unrolled"] | None = Field(
        None, description="Gradient of prototype_ot: envelope = the plan held constant (dC = T*, the implicit "
                          "gradient at convergence); unrolled = back-propagated through every Sinkhorn sweep (the "
                          "authors'). null = envelope (mmcore) / unrolled (authors).")
    decoupling: Literal["cosine", "squared_cosine"] = Field(
        "cosine", description="cosine: Eq. 1 as written (minimised at cos = -1); squared_cosine: cos^2 (minimised "
                              "at orthogonality; the authors' code, the only choice with reference: authors).")
    mmd_sigma: float | None = Field(None, gt=0, description="Gaussian bandwidth sigma of the homogeneity MMD, "
                                                            "exp(-|x-y|^2 / 2 sigma^2); the authors' mmd_bandwidth is "
                                                            "sigma^2 (1.0). null = median heuristic (mmcore only).")
    cost_reduction: Literal["mean", "sum"] = Field(
        "mean", description="authors only (hetero_cost_reduction): the Bures and sample-to-prototype costs average "
                            "(mean, the authors' default) or sum (the paper) over the d dimensions.")
    local_mahalanobis: bool = Field(False, description="authors only (local_proto_mahalanobis): divide the "
                                                       "sample-to-prototype cost by the prototype variance.")
    use_sequence_mask: bool = Field(
        False, description="authors only: pool over valid tokens (true) or over all T steps, padding included "
                           "(false, the authors' shipped configs). mmcore always uses the valid tokens.")
    latent_dim: int | None = Field(
        None, ge=1, description="authors only (pde_dim): output size of the per-modality latent distribution "
                                "encoders of the homogeneity branch; null = d_model (the authors' default).")
    seed: int = Field(0, description="mmcore only: seed of the local generator that picks the first prototypes.")

    @model_validator(mode="after")
    def _check(self):
        given = self.model_fields_set
        # a field given with its default value is accepted (a saved spec lists every field)
        changed = {f for f in given if getattr(self, f) != type(self).model_fields[f].default}
        if self.reference == "authors":
            wrong = [f for f in MMCORE_ONLY if f in changed]
            if wrong:
                raise ValueError(f"{', '.join(wrong)} only apply to reference: mmcore (the authors' code has no such "
                                 "setting); remove them or set reference: mmcore")
            if "decoupling" in given and self.decoupling != "squared_cosine":
                raise ValueError("reference: authors uses the authors' squared-cosine decoupling; remove "
                                 "decoupling or set reference: mmcore")
            if "mmd_sigma" in given and self.mmd_sigma is None:
                raise ValueError("reference: authors needs a fixed mmd_sigma (the authors' bandwidth is sigma^2); "
                                 "the median heuristic is mmcore only")
            for f, v in AUTHORS_PRESET.items():
                if f not in given:
                    object.__setattr__(self, f, v)
        else:
            for f, v in (("ot_loss", "transport"), ("ot_grad", "envelope")):
                if getattr(self, f) is None:
                    object.__setattr__(self, f, v)
            wrong = [f for f in AUTHORS_ONLY if f in changed]
            if wrong:
                raise ValueError(f"{', '.join(wrong)} only apply to reference: authors; set reference: authors or "
                                 "remove them")
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


class OrderOTParams(ComponentParams):
    """Order-aware relaxed OT: frame-to-token marginals of a soft monotone alignment (content + order)."""

    modality_fields: ClassVar[tuple[str, ...]] = ("anchor",)

    anchor: str = Anchor
    cost: Literal["cosine", "sqeuclidean"] = Field(
        "cosine", description="cosine: 1 - cos(x_i, y_j) in [0, 2]; sqeuclidean: ||x_i - y_j||^2 / d.")
    reg: float = Field(0.1, gt=0, description="Temperature epsilon of the content term (path score -C/epsilon), in "
                                              "cost units, as sinkhorn's reg.")
    order: float = Field(10.0, ge=0, description="Order strength lambda: nats charged per skipped anchor token or "
                                                  "step back. 0 = content only (the entropic relaxed-OT plan); "
                                                  "large = left-to-right paths only.")
    learn_order: bool = Field(False, description="Learn lambda (as log lambda, starting at order; needs order > 0).")
    normalize: Literal["paper", "barycentric"] = Field(
        "barycentric", description="barycentric: each anchor token gets the mean of its frames, weighted by the "
                                   "plan; paper: P X_m as relaxed_ot's Eq. 6 (a sum scaled by 1/T_m).")

    @model_validator(mode="after")
    def _check(self):
        if self.learn_order and self.order <= 0:
            raise ValueError("learn_order learns log(order), so order must be > 0; set order: 1.0 or learn_order: false")
        return self
