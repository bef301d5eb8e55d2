"""Params of the ADL imputer (torch-free, so `mmcore validate|schema|plugins` stay light).

Defaults are MM-Align's (Han et al., EMNLP 2022) where the paper gives one, else the authors' public
code (github.com/declare-lab/MM-Align, `src/main.py`); each field says which, and where neither
gives a usable value, what was chosen and why.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from mmcore.params import ComponentParams


class ADLParams(ComponentParams):
    """MM-Align alignment dynamics learner: windowed-OT targets, a GRU fitter, plan decoding (§3.4–3.5)."""

    modality_fields: ClassVar[tuple[str, ...]] = ("present", "victim")

    present: str = Field(
        "text", description="m1, the modality assumed complete whose sequence the victim is imputed from "
                            "(paper's first pair T -> V).")
    victim: str = Field(
        "vision", description="m2, the victim modality that may be missing (paper Fig. 1: visual).")
    window: int = Field(
        8, ge=0, le=64,
        description="W = K: half-width of the alignment window |j - c_i| <= W (Eq. 7 band and the fitter's 2W+1 "
                    "outputs, Eq. 12); 8 is the window of the paper's Fig. 5 and Table 8 (grid 3..10 in Table 7).")
    reg: float = Field(
        0.1, gt=0,
        description="Entropic regularisation mu of Eq. 8, in cosine-cost units (cost in [0, 2]). The paper gives "
                    "no value; the authors' code uses exp(-0.2 M), i.e. mu = 5, which makes the plan nearly "
                    "uniform inside the window.")
    max_iter: int = Field(
        200, ge=1, description="Sinkhorn iteration cap (the paper reports ~5 iterations to converge at its mu; "
                               "the authors' code stops at 10).")
    tol: float = Field(
        1e-4, gt=0, description="Stop Sinkhorn when the column-marginal L2 error of every pair is below this.")
    hidden: int = Field(
        32, ge=1, description="GRU hidden size of the fitter (authors' code: snkhrn_rnndim = 32).")
    bidirectional: bool = Field(
        True, description="Bidirectional GRU (authors' code; the paper only says 'a gated recurrent unit').")
    fit_loss: Literal["paper", "mse", "kl"] = Field(
        "paper", description="paper: Eq. 13, sqrt of the windowed squared error / ((2W+1) l); mse: mean squared "
                             "error over window cells (the authors' code); kl: KL(target row || predicted row).")
    warmup_epochs: int = Field(
        2, ge=0, description="Warm-up epochs of Alg. 1 (backbone only, not selectable); Table 7 grid {1, 2}, "
                             "authors' code 2. Capped at epochs - 1 so one selectable epoch remains.")
    fit_lr_scale: float = Field(
        1.0, gt=0, description="The fitter step's learning rate is train.lr * fit_lr_scale (the paper's eta_fit / "
                               "eta_main; Table 7 gives no separate eta_fit, so 1).")
    contrast: Literal["modalities", "imputed", "none"] = Field(
        "modalities", description="Contrastive loss adl_con on complete rows: modalities = Eq. 16 between pooled "
                                  "Z1 and Z2; imputed = between the pooled imputation of Z2 and the real Z2; none.")
    temperature: float = Field(
        0.1, gt=0, description="tau of Eq. 17 (the paper gives none); used on cosine similarities, as SimCLR.")
    substitute_rate: float = Field(
        0.0, ge=0, lt=1,
        description="Not in the paper (0 = off): in backbone steps, each complete row's victim is replaced by its "
                    "imputation with this probability, so the backbone sees imputed sequences even when the "
                    "training protocol removes nothing (setting A with complete training data).")

    @model_validator(mode="after")
    def _distinct(self) -> "ADLParams":
        if self.present == self.victim:
            raise ValueError(f"present and victim must be different modalities; both are {self.present!r}")
        return self
