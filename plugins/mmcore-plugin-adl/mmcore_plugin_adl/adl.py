r"""The ``adl`` imputer: MM-Align's alignment dynamics learner, with its denoising training phases.

Learning mode (training, on complete rows — both modalities present):

$$A^\star = \mathrm{Sinkhorn}_\mu\big(M(Z^1, Z^2)\big),\qquad \hat T = \mathrm{fitter}_\psi(Z^1),\qquad
\mathcal L_{fit}(\hat T, \bar A^\star)$$

Decoding mode (wherever the victim is absent: a missing row or a masked token, in training and
evaluation):

$$\hat z^2_j = \sum_i \hat A_{ij} z^1_i \Big/ \sum_i \hat A_{ij},\qquad \hat A = \mathrm{dense}(\hat T)$$

where $M$ is the windowed cosine cost (:mod:`.solver`), $\bar A^\star$ the row-normalised plan, the
window is centred on $c_i = \mathrm{round}(i (T_2 - 1)/(T_1 - 1))$ (:mod:`.window`, so $T_1 \ne T_2$
and padding work), the fitter is GRU + linear + window softmax (:mod:`.fitter`) and the fit loss
is Eq. 13 by default (:mod:`.losses`). Optionally $\mathcal L_{con}$ (Eq. 16) on complete rows.

Training schedule (Alg. 1) as phases (``training_phases``):

* ``warmup`` (``warmup_epochs``, not selectable): step ``backbone`` — every parameter but the
  fitter's, on $\mathcal L_{main} + \lambda \mathcal L_{con}$.
* ``denoise`` (to the end): step ``fitter`` — only ``imputer.fitter.*``, on $\mathcal L_{fit}$; then
  step ``backbone`` — every parameter but the fitter's, on $\mathcal L_{main} + \lambda \mathcal L_{con}$,
  with the victim of missing rows imputed by the (frozen) fitter: Alg. 1 lines 8–17 in one batch.

Reference: MM-Align (Han et al., EMNLP 2022), §3.4–3.5, Eq. 6–17, Alg. 1; Appendix B.
Notation: m¹ = ``present``, m² = ``victim``, W = K = ``window``, μ = ``reg``, λ = the spec weight of
``adl_con``, ψ = ``fitter``. aux losses: ``adl_fit`` (L_fit), ``adl_con`` (L_con).
Deviations:
* Every step applies the training missing protocol, and learning mode uses only rows the
  protocol left complete (the paper's $\mathcal D_c^{train}$). Alg. 1's warm-up runs on $\mathcal D_c$
  only; here missing rows of a warm-up batch are in the task loss too, imputed by the not yet
  trained fitter (the trainer has no per-step row filter; ``Step(missing=False)`` would instead
  reveal the victim of rows the protocol removed).
* One optimiser (the trainer's) for both steps: the paper's separate η_fit is not expressible.
* Other modalities' absent positions are zero-filled, as the ``zero`` imputer.
* A row whose present modality is itself missing gets no imputation (zeros): nothing to decode from.
* ``substitute_rate`` (off by default) is not in the paper.
Shapes: seqs[m] (B, T_m, d) -> seqs[m] (B, T_m, d); aux scalars.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcore.batch import Batch
from mmcore.phases import Phase, Step
from mmcore.protocols import BuildContext, ImputerOutput

from .decode import decode
from .fitter import AlignmentFitter
from .losses import contrastive_loss, fit_loss, masked_mean
from .params import ADLParams
from .solver import ot_targets
from .window import WindowGeometry, to_dense, window_geometry

__all__ = ["ADLImputer", "FITTER_PARAMS"]

#: parameter globs (over the pipeline's named_parameters) of the fitter ψ
FITTER_PARAMS = ("imputer.fitter.*",)


def _absent(batch: Batch, m: str) -> Tensor:
    """(B, T) bool: tokens of m with no observed content (masked, or the whole row missing)."""
    return batch.masked[m] | batch.missing[m].unsqueeze(1)


def _rows(geo: WindowGeometry, idx: Tensor) -> WindowGeometry:
    return WindowGeometry(*(t[idx] for t in geo))


class ADLImputer(nn.Module):
    """MM-Align's ADL imputer (see the module docstring for the equations and the schedule)."""

    # the fitter takes no part in a backbone step whose batch has nothing to impute (always, with
    # complete training data), and the backbone none in a fitter step: DDP must expect that
    has_unused_parameters = True

    def __init__(self, params: ADLParams, ctx: BuildContext):
        super().__init__()
        for role in ("present", "victim"):
            m = getattr(params, role)
            if m not in ctx.modalities:
                raise ValueError(f"ADLImputer: {role} modality {m!r} is not a pipeline modality; expected one of "
                                 f"{sorted(ctx.modalities)} (set imputer.params.{role})")
        self.p = params
        self.present, self.victim = params.present, params.victim
        self.fitter = AlignmentFitter(ctx.d_model, params.hidden, params.window, params.bidirectional)
        self._step: str | None = None  # None: no phases driving us (direct use, contract) = everything

    # ------------------------------------------------------------------ schedule
    def training_phases(self, epochs: int) -> list[Phase]:
        """Alg. 1 as phases: ``warmup`` (backbone only), then ``denoise`` (fitter step + backbone step)."""
        not_fitter = ("*", *(f"!{g}" for g in FITTER_PARAMS))
        backbone = Step("backbone", params=not_fitter, losses=("task", "adl_con"))
        # the fitter learns from D_c, the rows the protocol left complete (Alg. 1 lines 9-11)
        fitter = Step("fitter", params=FITTER_PARAMS, losses=("adl_fit",), rows="complete", lr_scale=self.p.fit_lr_scale)
        warm = min(self.p.warmup_epochs, max(epochs - 1, 0))
        # the warm-up trains the backbone on complete rows only (in setting B the protocol removes some)
        warmup = Step("backbone", params=not_fitter, losses=("task", "adl_con"), rows="complete")
        phases = [Phase("warmup", (warmup,), epochs=warm, select=False)] if warm else []
        return phases + [Phase("denoise", (fitter, backbone))]

    def set_step(self, phase: str, step: str) -> None:
        self._step = step

    # ------------------------------------------------------------------ forward
    def forward(self, seqs: dict[str, Tensor], batch: Batch) -> ImputerOutput:
        p, m1, m2 = self.p, self.present, self.victim
        z1, z2 = seqs[m1], seqs[m2]
        v1, v2 = batch.valid[m1], batch.valid[m2]
        B, T2, d = z2.shape
        if z1.shape[0] != B or z1.shape[-1] != d or v1.shape != z1.shape[:2] or v2.shape != z2.shape[:2]:
            raise ValueError(f"ADLImputer: {m1} is {tuple(z1.shape)} (valid {tuple(v1.shape)}) and {m2} is "
                             f"{tuple(z2.shape)} (valid {tuple(v2.shape)}); need (B, T_m, d) with the same B and d")
        out = {m: x.masked_fill(_absent(batch, m).unsqueeze(-1), 0.0) for m, x in seqs.items()}
        aux: dict[str, Tensor] = {}
        train = self.training
        learning = train and self._step in (None, "fitter")  # Alg. 1 lines 9-11
        backbone = train and self._step != "fitter"  # lines 12-17 (and the warm-up)
        source_ok = ~batch.missing[m1]  # (B,) rows with something to decode from
        complete = source_ok & ~batch.missing[m2]  # (B,) rows of D_c
        substitute = torch.zeros(B, dtype=torch.bool, device=z2.device)
        if backbone and p.substitute_rate > 0:
            substitute = (torch.rand(B, device=z2.device) < p.substitute_rate) & complete
        fill = (_absent(batch, m2) | substitute.unsqueeze(1)) & source_ok.unsqueeze(1) & v2  # (B, T_2)
        want_imputed = backbone and p.contrast == "imputed"
        decoding = bool(fill.any()) or want_imputed

        geo = window_geometry(v1, v2, p.window)
        rows = None
        if learning or decoding:
            # the fitter step updates ψ only: no gradient needs to reach the encoders through it
            rows = self.fitter(z1.detach() if self._step == "fitter" else z1, v1, geo)  # (B, T_1, 2W+1)
        if learning:
            idx = complete.nonzero().squeeze(1)
            if idx.numel():
                sub = _rows(geo, idx)
                target = ot_targets(z1[idx], z2[idx], v1[idx], sub, p.reg, max_iter=p.max_iter, tol=p.tol)
                aux["adl_fit"] = fit_loss(rows[idx], target, sub.ok, p.fit_loss)
            else:
                aux["adl_fit"] = rows.sum() * 0.0
        z2_hat = None
        if decoding:
            z2_hat = decode(to_dense(rows, geo, T2), z1)  # (B, T_2, d)
            out[m2] = torch.where(fill.unsqueeze(-1), z2_hat.to(z2.dtype), out[m2])
        if backbone and p.contrast != "none":
            idx = (complete & ~substitute).nonzero().squeeze(1)  # rows whose victim the backbone sees as real
            real = masked_mean(z2[idx], v2[idx])
            other = masked_mean(z1[idx], v1[idx]) if p.contrast == "modalities" else masked_mean(z2_hat[idx], v2[idx])
            aux["adl_con"] = contrastive_loss(other, real, p.temperature)
        return ImputerOutput(out, aux)
