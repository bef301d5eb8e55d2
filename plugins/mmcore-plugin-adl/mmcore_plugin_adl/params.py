"""Params of the ADL imputer (torch-free, so `mmcore validate|schema|plugins` stay light).

Defaults are the stabilised mmcore behaviour: MM-Align's (Han et al., EMNLP 2022) equations where the
paper gives them, else a choice stated in each field. ``reference: authors`` switches every behaviour
in which the authors' public code (github.com/declare-lab/MM-Align at e244859) differs to the
authors' computation at once (:data:`AUTHORS_PRESET`, :mod:`mmcore_plugin_adl.authors`); a field the
user gives explicitly still wins over the preset (the imputer logs a warning naming it, since the
result is then no longer authors-exact). The authors' ``main.py`` arguments (W = ``snkhrn_winsize`` 2,
GRU width, ``warmup_epoch``, ``lbd``, ``lr_sinkhorn``) are recipe values, not part of the preset:
``examples/mm_align_authors.yaml``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from mmcore.params import ComponentParams

__all__ = ["ADLParams", "AUTHORS_PRESET"]

#: What ``reference: authors`` sets when the field is not given explicitly (the authors' code at e244859:
#: ``OTSolver`` constructor defaults lam = 0.2 = 1/reg, maxIter = 10, eps = 1e-7; see each field).
AUTHORS_PRESET: dict[str, Any] = {
    "solver": "authors", "reg": 5.0, "max_iter": 10, "tol": 1e-7,
    "fitter_softmax": "all", "decode": "rows", "fit_loss": "authors",
    "contrast": "modalities", "contrast_score": "dot", "contrast_pool": "first", "contrast_reduction": "sum",
    "temperature": 1.0, "warmup_rule": "after_index", "substitute_rate": 0.0, "bidirectional": True,
}


class ADLParams(ComponentParams):
    """MM-Align alignment dynamics learner: windowed-OT targets, a GRU fitter, plan decoding (§3.4–3.5)."""

    modality_fields: ClassVar[tuple[str, ...]] = ("present", "victim")

    reference: Literal["mmcore", "authors"] = Field(
        "mmcore", description="mmcore: the stabilised behaviour (balanced log-domain OT, window-masked fitter, "
                              "barycentric decoding, Eq. 13, cosine InfoNCE); authors: the computation of the "
                              "authors' code (declare-lab/MM-Align e244859), equal to it to 1e-6 in float64 — sets "
                              "solver, reg, max_iter, tol, fitter_softmax, decode, fit_loss, contrast, "
                              "contrast_score, contrast_pool, contrast_reduction, temperature, warmup_rule, "
                              "substitute_rate and bidirectional to the authors' values unless given explicitly.")
    present: str = Field(
        "text", description="m1, the modality assumed complete whose sequence the victim is imputed from "
                            "(paper's first pair T -> V).")
    victim: str = Field(
        "vision", description="m2, the victim modality that may be missing (paper Fig. 1: visual).")
    window: int = Field(
        8, ge=0, le=64,
        description="W = K: half-width of the alignment window |j - c_i| <= W (Eq. 7 band and the fitter's 2W+1 "
                    "outputs, Eq. 12); 8 is the window of the paper's Fig. 5 and Table 8 (grid 3..10 in Table 7); "
                    "the authors' code defaults to snkhrn_winsize = 2.")
    solver: Literal["balanced", "authors"] = Field(
        "balanced", description="balanced: entropic OT with both marginals imposed (Eq. 8), log-domain Sinkhorn, "
                                "+inf outside the window, targets = plan rows as distributions; authors: the "
                                "authors' OTSolver — cost 1 - cos (eps 1e-5) + 100 outside the window cast to "
                                "float32, kernel exp(-M / reg), a loop that only rescales rows (the column marginal "
                                "is never imposed), targets P / P.sum(-1). authors needs square l x l plans: pairs "
                                "of unequal lengths are cropped to the shorter (see the README).")
    reg: float = Field(
        0.1, gt=0,
        description="Entropic regularisation mu of Eq. 8, in cosine-cost units (cost in [0, 2]). The paper gives "
                    "no value; the authors' code uses exp(-0.2 M), i.e. mu = 5 (authors preset), which makes the "
                    "plan nearly uniform inside the window.")
    max_iter: int = Field(
        200, ge=1, description="Solver iteration cap (the paper reports ~5 iterations to converge at its mu; the "
                               "authors' OTSolver maxIter = 10, authors preset).")
    tol: float = Field(
        1e-4, gt=0, description="Solver stop: balanced = when the column-marginal L2 error of every pair is below "
                                "this; authors = when max_i |u_i - sum_j P_ij| <= tol (OTSolver eps = 1e-7, "
                                "authors preset).")
    hidden: int = Field(
        32, ge=1, description="GRU hidden size of the fitter (authors' code: snkhrn_rnndim = 32).")
    bidirectional: bool = Field(
        True, description="Bidirectional GRU (authors' code; the paper only says 'a gated recurrent unit').")
    fitter_softmax: Literal["window", "all"] = Field(
        "window", description="window: softmax over the offsets that land on a valid victim position, padded rows "
                              "0 (each row a distribution inside the window); all: softmax over all 2W+1 offsets, "
                              "padded rows softmax(bias) (the authors' SinkhornFitter; out-of-range mass is "
                              "dropped when the row is applied).")
    decode: Literal["barycentric", "rows"] = Field(
        "barycentric", description="barycentric: z2_j = sum_i A_ij z1_i / sum_i A_ij (Eq. 14 with the column mass "
                                   "normalised); rows: h2_i = sum_j A_ij z1_j, the predicted rows applied to the "
                                   "present sequence with no normalisation (the authors' SinkhornFitter.inference; "
                                   "square plans, see solver).")
    fit_loss: Literal["paper", "mse", "kl", "authors"] = Field(
        "paper", description="paper: Eq. 13, sqrt of the windowed squared error / ((2W+1) l), averaged over pairs; "
                             "mse: mean squared error over window cells, averaged over pairs (mmcore's, not the "
                             "authors'); kl: KL(target row || predicted row); authors: per pair the mean squared "
                             "error over the whole l1 x l2 plan (out-of-window targets compared with 0), summed "
                             "over the batch (the authors' _criterion_fit).")
    warmup_epochs: int = Field(
        2, ge=0, description="Warm-up (backbone only, not selectable) of Alg. 1; Table 7 grid {1, 2}, authors' "
                             "code warmup_epoch = 2. How it counts: warmup_rule. Capped at epochs - 1 so one "
                             "selectable epoch remains.")
    warmup_rule: Literal["count", "after_index"] = Field(
        "count", description="count: warmup_epochs warm-up epochs; after_index: the fitter starts at the first epoch "
                             "e > warmup_epochs counted from 0, i.e. warmup_epochs + 1 warm-up epochs (the authors' "
                             "'epoch > warmup_epoch': 3 for warmup_epoch = 2).")
    fit_lr_scale: float = Field(
        1.0, gt=0, description="The fitter step's learning rate is train.lr * fit_lr_scale (the paper's eta_fit / "
                               "eta_main; Table 7 gives no separate eta_fit; the authors' lr_sinkhorn = 1e-3, so "
                               "1 with train.lr = 1e-3).")
    contrast: Literal["modalities", "imputed", "none"] = Field(
        "modalities", description="Contrastive loss adl_con on complete rows: modalities = Eq. 16 between Z1 and Z2 "
                                  "(paper and authors); imputed = between the imputation of Z2 and the real Z2; none.")
    contrast_score: Literal["cosine", "dot"] = Field(
        "cosine", description="Score of Eq. 17: cosine = cos(s, t) / temperature (SimCLR); dot = s.t / temperature "
                              "(the paper's and the authors' raw dot product).")
    contrast_pool: Literal["mean", "first"] = Field(
        "mean", description="Sequence summary scored by adl_con: mean = masked mean over valid tokens; first = the "
                            "first time step (the authors' h[0], their head token; mmcore encoders have no [CLS]).")
    contrast_reduction: Literal["mean", "sum"] = Field(
        "mean", description="mean: Eq. 16's -1/N_b sum_i log softmax; sum: summed over the batch (the authors: "
                            "total = task - lbd * contra_loss, so adl_con = -contra_loss).")
    temperature: float = Field(
        0.1, gt=0, description="tau of Eq. 17 (the paper gives none; the authors' code has none, i.e. 1, authors "
                               "preset).")
    substitute_rate: float = Field(
        0.0, ge=0, lt=1,
        description="Not in the paper nor the authors' code (0 = off): in backbone steps, each complete row's "
                    "victim is replaced by its imputation with this probability, so the backbone sees imputed "
                    "sequences even when the training protocol removes nothing (setting A with complete data).")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        # reference: authors fills every field the user did not give; explicit fields win
        if isinstance(data, dict) and data.get("reference") == "authors":
            return {**AUTHORS_PRESET, **data}
        return data

    @model_validator(mode="after")
    def _distinct(self) -> "ADLParams":
        if self.present == self.victim:
            raise ValueError(f"present and victim must be different modalities; both are {self.present!r}")
        return self

    def authors_deviations(self) -> dict[str, tuple[Any, Any]]:
        """With ``reference: authors``: ``{field: (value, authors' value)}`` for preset fields set otherwise."""
        if self.reference != "authors":
            return {}
        return {f: (getattr(self, f), v) for f, v in AUTHORS_PRESET.items() if getattr(self, f) != v}
