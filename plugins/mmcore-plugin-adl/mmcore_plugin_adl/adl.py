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

Authors-exact mode (``reference: authors``, or the single switches): the authors' solver, fitter
softmax, row decoding, fit loss and contrastive term (:mod:`.authors`). Those plans are square
$l \times l$, one length per pair: with ``solver: authors`` or ``decode: rows``, each pair is cropped
to its common prefix $l = \min(T_1, T_2)$ of valid tokens (the authors' ``m1[:l], m2[:l]``) — equal
lengths (word-aligned data such as mmmo.npz) are untouched; with unequal lengths, present tokens past
$l$ are unused and victim tokens past $l$ get no imputation (0), and the imputer warns once.

Training schedule (Alg. 1) as phases (``training_phases``):

* ``warmup`` (``warmup_epochs``, or ``warmup_epochs + 1`` with ``warmup_rule: after_index`` — the
  authors' ``epoch > warmup_epoch``; not selectable): step ``backbone`` — every parameter but the
  fitter's, on $\mathcal L_{main} + \lambda \mathcal L_{con}$.
* ``denoise`` (to the end): step ``fitter`` — only ``imputer.fitter.*``, on $\mathcal L_{fit}$; then
  step ``backbone`` — every parameter but the fitter's, on $\mathcal L_{main} + \lambda \mathcal L_{con}$,
  with the victim of missing rows imputed by the (frozen) fitter: Alg. 1 lines 8–17 in one batch.

Reference: MM-Align (Han et al., EMNLP 2022), §3.4–3.5, Eq. 6–17, Alg. 1; Appendix B.
Notation: m¹ = ``present``, m² = ``victim``, W = K = ``window``, μ = ``reg``, λ = the spec weight of
``adl_con``, ψ = ``fitter``. aux losses: ``adl_fit`` (L_fit), ``adl_con`` (L_con).
Deviations:
* Every step applies the training missing protocol, and learning mode uses only rows the
  protocol left complete (the paper's $\mathcal D_c^{train}$); the warm-up and the fitter step see
  only those rows (``Step(rows="complete")``).
* One optimiser (the trainer's AdamW) for both steps; the fitter's step size is ``train.lr ·
  fit_lr_scale`` (the authors: a separate Adam with ``lr_sinkhorn``).
* Other modalities' absent positions are zero-filled, as the ``zero`` imputer.
* A row whose present modality is itself missing gets no imputation (zeros): nothing to decode from.
* ``substitute_rate`` (off by default) is in neither the paper nor the authors' code.
Shapes: seqs[m] (B, T_m, d) -> seqs[m] (B, T_m, d); aux scalars.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmcore.batch import Batch
from mmcore.functional import zero_invalid
from mmcore.phases import Phase, Step
from mmcore.protocols import BuildContext, ImputerOutput

from .authors import otsolver_forward
from .decode import decode
from .fitter import AlignmentFitter
from .losses import contrastive_loss, fit_loss, fit_loss_authors, masked_mean
from .params import ADLParams
from .solver import ot_targets
from .window import WindowGeometry, to_dense, to_window, window_geometry

__all__ = ["ADLImputer", "FITTER_PARAMS"]

logger = logging.getLogger(__name__)

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
        self.fitter = AlignmentFitter(ctx.d_model, params.hidden, params.window, params.bidirectional,
                                      softmax=params.fitter_softmax)
        # the authors' plans are square l x l: crop each pair to its common valid prefix
        self.square = params.solver == "authors" or params.decode == "rows"
        self._warned_crop = False
        self._step: str | None = None  # None: no phases driving us (direct use, contract) = everything
        off = params.authors_deviations()
        if off:
            logger.warning("adl: reference: authors with %s given explicitly — not the authors' computation in "
                           "these (authors' values: %s)", ", ".join(f"{k}={v[0]!r}" for k, v in off.items()),
                           ", ".join(f"{k}={v[1]!r}" for k, v in off.items()))

    # ------------------------------------------------------------------ schedule
    def training_phases(self, epochs: int) -> list[Phase]:
        """Alg. 1 as phases: ``warmup`` (backbone only), then ``denoise`` (fitter step + backbone step)."""
        not_fitter = ("*", *(f"!{g}" for g in FITTER_PARAMS))
        backbone = Step("backbone", params=not_fitter, losses=("task", "adl_con"))
        # the fitter learns from D_c, the rows the protocol left complete (Alg. 1 lines 9-11)
        fitter = Step("fitter", params=FITTER_PARAMS, losses=("adl_fit",), rows="complete", lr_scale=self.p.fit_lr_scale)
        # after_index: the authors' `epoch > warmup_epoch` (0-based) leaves warmup_epoch + 1 warm-up epochs
        n_warm = self.p.warmup_epochs + (1 if self.p.warmup_rule == "after_index" else 0)
        warm = min(n_warm, max(epochs - 1, 0))
        # the warm-up trains the backbone on complete rows only (in setting B the protocol removes some)
        warmup = Step("backbone", params=not_fitter, losses=("task", "adl_con"), rows="complete")
        phases = [Phase("warmup", (warmup,), epochs=warm, select=False)] if warm else []
        return phases + [Phase("denoise", (fitter, backbone))]

    def set_step(self, phase: str, step: str) -> None:
        self._step = step

    # ------------------------------------------------------------------ helpers
    def _square_view(self, z1: Tensor, z2: Tensor, v1: Tensor, v2: Tensor):
        """Crop every pair to l = min(T_1, T_2) valid tokens (the authors' square plans); see the module docstring."""
        n1, n2 = v1.sum(1), v2.sum(1)  # (B,)
        n = torch.minimum(n1, n2)
        if not self._warned_crop and bool((n1 != n2).any()):
            self._warned_crop = True
            bad = int((n1 != n2).sum())
            warnings.warn(f"adl ({self.p.solver} solver, {self.p.decode} decoding): {bad} of {len(n1)} pairs have "
                          f"different {self.present}/{self.victim} lengths; the authors' square plans use the first "
                          f"min(T_1, T_2) tokens of both (victim tokens past it get no imputation)", stacklevel=3)
        L = min(z1.shape[1], z2.shape[1])
        v = torch.arange(L, device=z1.device).unsqueeze(0) < n.unsqueeze(1)  # (B, L)
        return z1[:, :L], z2[:, :L], v, v

    def _targets(self, z1: Tensor, z2: Tensor, v1: Tensor, v2: Tensor, geo: WindowGeometry) -> Tensor:
        """Dense fitting targets (B, T_1, T_2) of complete pairs: balanced row distributions or the authors'."""
        p = self.p
        if p.solver == "authors":
            # square: v1 == v2 here (see _square_view); the authors' OTSolver with lam = 1 / reg, in float32
            # as the authors (float64 stays float64: the fixtures' convention; bf16/fp16 activations are widened)
            dt = torch.float64 if z1.dtype == torch.float64 else torch.float32
            return otsolver_forward(z1.to(dt), z2.to(dt), v1.sum(1), p.window, lam=1.0 / p.reg, max_iter=p.max_iter,
                                    eps=p.tol).targets
        win = ot_targets(z1, z2, v1, geo, p.reg, max_iter=p.max_iter, tol=p.tol)  # (B, T_1, 2W+1)
        return to_dense(win, geo, z2.shape[1])

    # ------------------------------------------------------------------ forward
    def forward(self, seqs: dict[str, Tensor], batch: Batch) -> ImputerOutput:
        p, m1, m2 = self.p, self.present, self.victim
        # padding holds nothing, not even NaN: selected away before any arithmetic (forward and backward)
        seqs = {m: zero_invalid(x, batch.valid[m]) for m, x in seqs.items()}
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

        # the working view: the pair as is, or cropped to a square l x l (authors' solver / row decoding)
        w1, w2, wv1, wv2 = self._square_view(z1, z2, v1, v2) if self.square and (learning or decoding) else (z1, z2, v1, v2)
        geo = window_geometry(wv1, wv2, p.window)
        rows = None
        if learning or decoding:
            # the fitter step updates ψ only: no gradient needs to reach the encoders through it
            rows = self.fitter(w1.detach() if self._step == "fitter" else w1, wv1, geo)  # (B, T_1', 2W+1)
        if learning:
            idx = complete.nonzero().squeeze(1)
            if idx.numel():
                sub = _rows(geo, idx)
                target = self._targets(w1[idx], w2[idx], wv1[idx], wv2[idx], sub)  # (n, T_1', T_2') dense
                if p.fit_loss == "authors":
                    cells = wv1[idx].unsqueeze(2) & wv2[idx].unsqueeze(1)
                    aux["adl_fit"] = fit_loss_authors(to_dense(rows[idx], sub, w2.shape[1]), target, cells)
                else:
                    aux["adl_fit"] = fit_loss(rows[idx], to_window(target.to(rows.dtype), sub), sub.ok, p.fit_loss)
            else:
                aux["adl_fit"] = rows.sum() * 0.0
        z2_hat = None
        if decoding:
            z2_hat = decode(to_dense(rows, geo, w2.shape[1]), w1, p.decode)  # (B, T_2', d)
            z2_hat = F.pad(z2_hat, (0, 0, 0, T2 - z2_hat.shape[1]))  # (B, T_2, d): cropped positions get 0
            out[m2] = torch.where(fill.unsqueeze(-1), z2_hat.to(z2.dtype), out[m2])
        if backbone and p.contrast != "none":
            idx = (complete & ~substitute).nonzero().squeeze(1)  # rows whose victim the backbone sees as real
            if p.contrast_pool == "first":  # the authors' h[0]
                real = z2[idx, 0]
                other = z1[idx, 0] if p.contrast == "modalities" else z2_hat[idx, 0]
            else:
                real = masked_mean(z2[idx], v2[idx])
                other = masked_mean(z1[idx], v1[idx]) if p.contrast == "modalities" else masked_mean(z2_hat[idx], v2[idx])
            aux["adl_con"] = contrastive_loss(other, real, p.temperature, p.contrast_score, p.contrast_reduction)
        return ImputerOutput(out, aux)
