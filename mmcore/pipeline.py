"""The assembled model: encoders -> imputer -> aligner -> fuser -> head, plus standalone losses."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import capabilities
from .batch import Batch
from .functional import zero_invalid
from .phases import Phase, Step
from .protocols import PipelineState


class PipelineOutput(NamedTuple):
    pred: Tensor  # (B,) regression or (B, C) logits
    aux: dict[str, Tensor]  # auxiliary loss name -> scalar
    state: PipelineState


class Pipeline(nn.Module):
    r"""A multimodal pipeline assembled from registered components.

    $$\hat y = \mathrm{head}(\mathrm{fuse}(\mathrm{align}(\mathrm{impute}(\{\mathrm{enc}_m(x_m)\}_m))))$$
    $$\mathcal{L} = \mathcal{L}_{task}(\hat y, y) + \sum_k w_k \mathcal{L}_k$$

    Masked tokens of modalities with ``mask_with: unk`` are replaced by a learned unknown-token
    vector before encoding (text); padded positions are zeroed before encoding. An aligner that sets
    ``accepts_missing = True`` also receives ``missing={m: (B,) bool}`` (rows whose modality is absent),
    e.g. to keep them out of batch statistics. A fuser that sets ``accepts_batch = True`` also receives
    ``batch=`` (labels and row indices, for per-sample training state such as Self-MM's label memories).
    """

    def __init__(self, encoders: dict[str, nn.Module], aligner: nn.Module, fuser: nn.Module, head: nn.Module, *,
                 imputer: nn.Module | None = None, losses: dict[str, nn.Module] | None = None,
                 loss_weights: dict[str, float] | None = None, unk_dims: dict[str, int] | None = None):
        super().__init__()
        self.modalities = list(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.imputer = imputer
        self.aligner = aligner
        self.fuser = fuser
        self.head = head
        self.losses = nn.ModuleDict(losses or {})
        self.loss_weights = dict(loss_weights or {})
        self.unk = nn.ParameterDict({m: nn.Parameter(torch.zeros(d)) for m, d in (unk_dims or {}).items()})

    def components(self) -> dict[str, nn.Module]:
        parts = {f"encoders.{m}": e for m, e in self.encoders.items()}
        if self.imputer is not None:
            parts["imputer"] = self.imputer
        parts.update(aligner=self.aligner, fuser=self.fuser, head=self.head)
        parts.update({f"losses.{k}": v for k, v in self.losses.items()})
        return parts

    def encode(self, batch: Batch) -> dict[str, Tensor]:
        out = {}
        for m in self.modalities:
            x, valid = batch.features[m], batch.valid[m]
            if m in self.unk:
                x = torch.where(batch.masked[m].unsqueeze(-1), self.unk[m].to(x.dtype), x)
            out[m] = self.encoders[m](zero_invalid(x, valid), valid)  # (B, T_m, d)
        return out

    def forward(self, batch: Batch) -> PipelineOutput:
        aux: dict[str, Tensor] = {}
        encoded = self.encode(batch)
        seqs = encoded
        if self.imputer is not None:
            imp = self.imputer(seqs, batch)
            seqs = imp.seqs
            _merge(aux, imp.aux)
        kw = {"missing": {m: batch.missing[m] for m in seqs}} if capabilities.accepts_missing(self.aligner) else {}
        al = self.aligner(seqs, {m: batch.valid[m] for m in seqs}, **kw)
        _merge(aux, al.aux)
        fkw = {"batch": batch} if capabilities.accepts_batch(self.fuser) else {}
        fu = self.fuser(al.seqs, al.valid, **fkw)
        _merge(aux, fu.aux)
        pred = self.head(fu.rep)
        state = PipelineState(batch, encoded, seqs, al.seqs, al.valid, fu.rep, pred)
        for name, loss in self.losses.items():
            _merge(aux, {name: loss(state)})
        return PipelineOutput(pred, aux, state)

    def total_loss(self, out: PipelineOutput, labels: Tensor, step: Step | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``task + Σ w·aux`` over the terms ``step`` selects; returns (total, unweighted terms)."""
        terms = {"task": self.head.loss(out.pred, labels)}
        selected = [terms["task"]] if step is None or step.selects_loss("task") else []
        for name, value in out.aux.items():
            if name not in self.loss_weights:
                raise RuntimeError(f"a component returned auxiliary loss {name!r} that it did not declare; declare it "
                                   f"with register(..., aux_losses={{{name!r}: default_weight}})")
            terms[name] = value
            if step is None or step.selects_loss(name):
                selected.append(self.loss_weights[name] * value)
        # only the selected terms are summed, so a step's backward runs through just the graph they need;
        # a step that selects nothing present gets a zero that still touches the graph (DDP needs a backward)
        total = sum(selected[1:], selected[0]) if selected else out.pred.sum() * 0.0
        return total, terms

    def training_phases(self, epochs: int) -> tuple[Phase, ...] | None:
        """Phases declared by a component (at most one may declare them), else None."""
        found = [(k, capabilities.training_phases(c, epochs)) for k, c in self.components().items()]
        found = [(k, ph) for k, ph in found if ph]
        if len(found) > 1:
            raise ValueError(f"several components declare training phases ({', '.join(k for k, _ in found)}); "
                             "only one may")
        return tuple(found[0][1]) if found else None

    def set_step(self, phase: str, step: str) -> None:
        for c in self.components().values():
            capabilities.set_step(c, phase, step)


def _merge(aux: dict[str, Tensor], new: dict[str, Tensor]) -> None:
    """Add a component's aux losses; the same name from two components is summed."""
    for k, v in new.items():
        aux[k] = aux[k] + v if k in aux else v
