"""Training phases that components can declare (torch-free).

Most pipelines train with one phase of one step per batch: all parameters, all losses, the
missing-modality protocol applied. A component that needs more (MM-Align's ADL imputer:
warm-up on complete data, then a fitter step and a backbone step per batch, then training
with missing data) implements::

    def training_phases(self, epochs: int) -> list[Phase] | None

on its ``nn.Module``. The trainer asks every component, and at most one may answer.
Before each step the trainer calls ``set_step(phase_name, step_name)`` on every component
that defines it, so the component can change behaviour (e.g. compute its fit loss).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One optimiser step per batch.

    ``params``: glob patterns over parameter names (``model.named_parameters()``) updated by
    this step; a leading ``!`` excludes (``("*", "!imputer.fitter.*")``).
    ``losses``: loss terms summed: ``"task"`` and aux names; ``"*"`` = all.
    ``missing``: apply the training missing-modality protocol to the batch in this step.
    ``rows``: ``"all"``, or ``"complete"`` = only the rows that have every modality after the protocol
    (e.g. a warm-up on complete data in setting B); a batch without such rows skips the step.
    ``lr_scale``: this step's learning rate is ``train.lr · lr_scale`` (a separate step size, e.g. MM-Align's η_fit).
    """

    name: str
    params: tuple[str, ...] = ("*",)
    losses: tuple[str, ...] = ("*",)
    missing: bool = True
    rows: str = "all"
    lr_scale: float = 1.0

    def __post_init__(self):
        if self.rows not in ("all", "complete"):
            raise ValueError(f"Step({self.name!r}): rows must be 'all' or 'complete', got {self.rows!r}")
        if not self.lr_scale > 0:
            raise ValueError(f"Step({self.name!r}): lr_scale must be > 0, got {self.lr_scale}")

    def selects_param(self, name: str) -> bool:
        keep = False
        for pat in self.params:
            if pat.startswith("!"):
                if fnmatch.fnmatchcase(name, pat[1:]):
                    keep = False
            elif fnmatch.fnmatchcase(name, pat):
                keep = True
        return keep

    def selects_loss(self, name: str) -> bool:
        return "*" in self.losses or name in self.losses


@dataclass(frozen=True)
class Phase:
    """A run of epochs with the same per-batch steps. ``epochs=None``: until training ends.

    ``select``: whether epochs in this phase may be chosen as the best model (validation) and
    count for early stopping (a warm-up phase usually may not).
    """

    name: str
    steps: tuple[Step, ...]
    epochs: int | None = None
    select: bool = True


DEFAULT_PHASES: tuple[Phase, ...] = (Phase("train", (Step("all"),)),)


def phase_at(phases: tuple[Phase, ...] | list[Phase], epoch: int) -> Phase:
    """The phase that epoch (0-based) belongs to."""
    start = 0
    for ph in phases:
        if ph.epochs is None or epoch < start + ph.epochs:
            return ph
        start += ph.epochs
    return phases[-1]
