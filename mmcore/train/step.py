"""One training batch: every step of the current phase, each a forward, a backward and an optimiser step.

Per step of a :class:`~mmcore.phases.Phase` (see :mod:`mmcore.phases`): apply the training
missing-modality protocol (if the step asks for it), keep the complete rows (``rows="complete"``),
forward under the precision's autocast, sum the step's loss terms in float32, stop every rank on a
non-finite loss, backpropagate with this rank's DDP weight, drop the gradients of the parameters
the step does not train, clip, and step AdamW with the step's learning-rate scale. The loss terms
the step optimised are added to the epoch's running means.

Under DDP each rank's batch-mean loss is weighted by its share of the global batch's real rows,
``w_r = n_r · W / N`` (``n_r`` rows on rank r, ``W`` ranks, ``N`` rows over all ranks): DDP averages
gradients over ranks, so ``(1/W) Σ_r w_r ∇L_r = Σ_r (n_r / N) ∇L_r`` is the single-process gradient
of the whole batch, an uneven last batch included (a rank whose rows are all padding gets weight 0).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import torch
from torch import nn

from ..batch import Batch
from ..errors import TrainingDivergedError
from ..missing import MissingProtocol
from ..phases import Phase, Step
from ..pipeline import Pipeline
from .distributed import DistEnv, ranks_where, sum_across_ranks


@dataclass
class TermMeans:
    """Row-weighted running sums of logged loss terms; ``means()`` gives the epoch's per-row means."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, value: float, n_rows: int) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value * n_rows
        self.counts[key] = self.counts.get(key, 0) + n_rows

    def means(self) -> dict[str, float]:
        return {k: v / max(self.counts[k], 1) for k, v in self.sums.items()}

    def postfix(self, n: int = 4) -> str:
        """The first ``n`` running means, for a progress bar."""
        return " ".join(f"{k}={v / max(self.counts[k], 1):.4f}" for k, v in list(self.sums.items())[:n])

    @classmethod
    def merged(cls, parts: list[tuple[dict[str, float], dict[str, int]]]) -> TermMeans:
        """The sums of several ranks' ``(sums, counts)`` (gathered as plain data), keys in first-seen order."""
        keys = list(dict.fromkeys(k for p in parts for k in p[0]))
        return cls({k: sum(p[0].get(k, 0.0) for p in parts) for k in keys},
                   {k: sum(p[1].get(k, 0) for p in parts) for k in keys})


class EagerAdamW(torch.optim.AdamW):
    """:class:`torch.optim.AdamW` that never imports ``torch._dynamo`` (0.9-2.8 s CPU at startup, docs/performance.md).

    torch 2.x wraps ``add_param_group``, ``zero_grad``, ``state_dict``, ``load_state_dict`` (the
    ``_disable_dynamo`` wrapper) and ``step`` (the ``_use_grad_for_differentiable`` wrapper) in
    decorators whose first call imports ``torch._dynamo`` only to mark the method as not traceable.
    In eager mode those wrappers do nothing else (``step``'s sets the grad mode, done here too), so this
    class calls the wrapped functions themselves: the same update code, the same state dict as
    ``AdamW`` (checkpoints move between the two). Used when the model is not compiled.
    """

    # the functions under the wrappers (inspect.unwrap follows functools.wraps' __wrapped__)
    _add_param_group = staticmethod(inspect.unwrap(torch.optim.Optimizer.add_param_group))
    _zero_grad = staticmethod(inspect.unwrap(torch.optim.Optimizer.zero_grad))
    _state_dict = staticmethod(inspect.unwrap(torch.optim.Optimizer.state_dict))
    _load_state_dict = staticmethod(inspect.unwrap(torch.optim.Optimizer.load_state_dict))
    _step = staticmethod(inspect.unwrap(torch.optim.AdamW.step))

    def add_param_group(self, param_group: dict) -> None:
        EagerAdamW._add_param_group(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        EagerAdamW._zero_grad(self, set_to_none)

    def state_dict(self) -> dict:
        return EagerAdamW._state_dict(self)

    def load_state_dict(self, state_dict: dict) -> None:
        EagerAdamW._load_state_dict(self, state_dict)

    def step(self, closure=None):
        prev = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return EagerAdamW._step(self, closure)
        finally:
            torch.set_grad_enabled(prev)


def make_optimizer(params, lr: float, weight_decay: float, compiled: bool) -> torch.optim.Optimizer:
    """The run's AdamW: :class:`EagerAdamW` in eager mode, torch's own class when the model is compiled."""
    cls = torch.optim.AdamW if compiled else EagerAdamW
    return cls(params, lr=lr, weight_decay=weight_decay)


def optimizer_step(optimizer: torch.optim.Optimizer, lr_scale: float) -> None:
    """One optimiser step; ``lr_scale`` scales the learning rate for this step only (restored after)."""
    if lr_scale == 1.0:
        optimizer.step()
        return
    saved = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = g["lr"] * lr_scale
    try:
        optimizer.step()
    finally:
        for g, lr in zip(optimizer.param_groups, saved):
            g["lr"] = lr


def _fp32(out):
    """The pipeline output with prediction and auxiliary losses in float32 (bf16 under autocast)."""
    return out._replace(pred=out.pred.float(), aux={k: v.float() for k, v in out.aux.items()})


@dataclass
class BatchStepper:
    """Trains one batch through every step of a phase (the body of the trainer's epoch loop).

    Args:
        model: the pipeline (parameters, losses, ``set_step``).
        forward_model: what the forward runs through: ``model``, or its DDP wrapper.
        optimizer: AdamW over ``model``'s parameters.
        env: this process's place in the process group.
        protocol: the training missing-modality protocol.
        seed: the run's seed (the protocol's masks are a function of seed, epoch, split and row).
        grad_clip: max gradient norm, or None/0 for no clipping.
        autocast: a context manager factory for the forward (bf16 autocast or a null context).
        run_dir: named in the divergence error (its checkpoints are kept).
    """

    model: Pipeline
    forward_model: nn.Module
    optimizer: torch.optim.Optimizer
    env: DistEnv
    protocol: MissingProtocol
    seed: int
    grad_clip: float | None
    autocast: Callable[[], ContextManager]
    run_dir: str

    def run(self, batch: Batch, phase: Phase, epoch: int, mine: int, everyone: int, log: TermMeans) -> None:
        """Train on ``batch`` (on the device): ``mine`` real rows on this rank, ``everyone`` over all ranks.

        Raises:
            TrainingDivergedError: a step's loss is not finite on some rank (raised on every rank).
        """
        env = self.env
        scale = mine * env.world_size / everyone  # this rank's DDP loss weight (module docstring)
        for step in phase.steps:
            b = self.protocol.apply(batch, seed=self.seed, epoch=epoch, split="train") if step.missing else batch
            step_scale, n_rows = scale, mine
            if step.rows == "complete":
                b, n_rows, step_scale = self._complete_rows(b)
                if b is None:
                    continue  # no complete row on any rank: nothing to learn from in this step
            self.model.set_step(phase.name, step.name)
            with self.autocast():
                out = self.forward_model(b)
            loss, terms = self.model.total_loss(_fp32(out), b.labels, step)  # the loss in fp32 under bf16 too
            self._check_finite(loss, terms, epoch, step)
            self.optimizer.zero_grad(set_to_none=True)
            (loss * step_scale if env.distributed else loss).backward()
            self._keep_step_grads(step)
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None],
                                               self.grad_clip)
            optimizer_step(self.optimizer, step.lr_scale)
            for k, v in terms.items():
                if step.selects_loss(k):  # log what this step optimised, not every term it computed
                    log.add(f"{step.name}/{k}" if len(phase.steps) > 1 else k, float(v.detach()), n_rows)

    def _check_finite(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], epoch: int, step: Step) -> None:
        env = self.env
        bad = ranks_where(not bool(torch.isfinite(loss)), env)  # all ranks stop, not just the diverged one
        if bad:
            raise TrainingDivergedError(
                f"non-finite loss at epoch {epoch + 1}, step {step.name!r}"
                + (f" on rank(s) {', '.join(map(str, bad))}" if env.distributed else "") + ": "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                + f"; lower train.lr, enable train.grad_clip, or check the data for NaN/inf (checkpoints up to epoch "
                f"{epoch} are kept in {self.run_dir})")

    def _keep_step_grads(self, step: Step) -> None:
        """Drop the gradients of parameters this step does not train (so AdamW leaves them alone)."""
        if step.params != ("*",):
            for name, p in self.model.named_parameters():
                if not step.selects_param(name):
                    p.grad = None

    def _complete_rows(self, b: Batch):
        """The rows of ``b`` that have every modality, with this rank's DDP loss weight; (None, 0, 0)
        when no rank has one. Every rank takes part (the counts are all-reduced) so none waits alone."""
        keep = ~torch.stack([b.missing[m] for m in b.modalities]).any(0)  # (B,)
        n = int(keep.sum())
        total = int(sum_across_ranks(torch.tensor([float(n)]), self.env).item()) if self.env.distributed else n
        if total == 0:
            return None, 0, 0.0
        if n == 0:  # this rank has none but others do: a zero-weight pass keeps DDP's collectives in step
            return b, 0, 0.0
        return b.select(keep.nonzero().squeeze(1)), n, n * self.env.world_size / total
