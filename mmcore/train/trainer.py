"""The trainer: seeded AdamW training with phases, validation-only model selection, early
stopping, atomic checkpoints with exact resume, per-epoch metrics, and DDP under torchrun.

Total loss per step: ``task + Σ_k w_k · aux_k`` over the terms the current phase's step selects
(:mod:`mmcore.phases`). Randomness: batch order is a function of (seed, epoch); missing-modality
masks of (seed, epoch, split, row); dropout uses torch's RNG whose state is checkpointed — so an
interrupted run resumed with ``--resume`` ends with the same metrics as an uninterrupted one.

Under DDP (see docs/scaling.md) each rank takes ``batch_size // world_size`` rows of every global
batch; each rank's loss is weighted by its share of the global batch's real rows, so the averaged
gradient is the single-process one (an uneven last batch and the sampler's padding included). Ranks
start from the same weights and draw their own dropout masks; rank 0's parameters and buffers are
broadcast before every evaluation; validation/test metrics are computed on the gathered split.

One batch's steps (weighting, phases' steps, row filtering, the non-finite check, gradient masking,
lr scaling) are :mod:`mmcore.train.step`; the checkpoint payload is :mod:`mmcore.train.checkpoint`;
progress, metric files and TensorBoard are :mod:`mmcore.train.reporting`; the seeds and torch's
thread count a run starts from are :mod:`mmcore.train.process`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import capabilities
from ..builder import build
from ..data.base import MultimodalData, Split, iterate_batches
from ..errors import CheckpointError, SpecError, SpecIssue
from ..metrics import METRIC_MODES, compute_metrics, metric_names, select_metric_problem
from ..missing import MissingProtocol
from ..phases import DEFAULT_PHASES, Phase, phase_at
from ..pipeline import Pipeline
from ..spec import PipelineSpec, ResolvedSpec
from .checkpoint import (load_checkpoint, rng_state, save_checkpoint, set_rng_state, spec_diff, training_payload,
                         training_state, write_json)
from .distributed import DistEnv, broadcast_module, gather_objects, gather_rows, on_main, rank_seed, real_rows
from .reporting import close_tensorboard, progress_bar, write_metrics
from .process import apply_thread_policy, prepare_process, seed_everything
from .step import BatchStepper, TermMeans, make_optimizer

log = logging.getLogger("mmcore.train")


@dataclass
class TrainState:
    """What a checkpoint must carry besides weights to continue exactly where training stopped."""

    epoch: int = 0  # epochs completed
    best_score: float | None = None
    best_epoch: int | None = None
    stale: int = 0  # selectable epochs since the last improvement
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False


def _mode(metric: str) -> str:
    return METRIC_MODES.get(metric, "max")


def _better(score: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(score):
        return False
    return best is None or (score < best if mode == "min" else score > best)


class Trainer:
    """Train one pipeline on one dataset, writing everything into ``run_dir`` (rank 0 only).

    The constructor touches no global state: the model's initial weights come from torch's random
    stream as the caller left it. To train reproducibly build it with :meth:`for_training`, which
    seeds first; to load weights into it (eval, plots), seed or not as the caller sees fit.
    """

    def __init__(self, rs: ResolvedSpec, data: MultimodalData, run_dir: str, *, env: DistEnv | None = None,
                 progress: bool = True):
        self.rs, self.spec, self.data, self.run_dir = rs, rs.spec, data, run_dir
        self.env = env or DistEnv()
        self.progress = progress and self.env.is_main
        t = self.spec.train
        self.device = self.env.device
        self.model: Pipeline = build(rs, data.info).to(self.device)
        ws = self.env.world_size
        if self.env.is_main and self.env.distributed and t.batch_size % ws:
            per = max(1, t.batch_size // ws)
            log.warning("train.batch_size %d is not a multiple of the %d processes: each takes %d rows, so the global "
                        "batch is %d; set batch_size to a multiple of %d to train with the batch the spec names",
                        t.batch_size, ws, per, per * ws, ws)
        self.phases: tuple[Phase, ...] = self.model.training_phases(t.epochs) or DEFAULT_PHASES
        self.optimizer = make_optimizer(self.model.parameters(), t.lr, t.weight_decay, compiled=t.compile)
        self.scheduler = self._make_scheduler()
        mask_with = {m: ms.resolved_mask_with(m) for m, ms in self.spec.modalities.items()}
        self.train_protocol = MissingProtocol(self.spec.missing.train, mask_with)
        self.eval_protocol = MissingProtocol(self.spec.missing.eval_ops(), mask_with)
        self.state = TrainState()
        self.metric = t.select_metric
        self._check_metric()
        self.forward_model = self._wrap(self.model)

    @classmethod
    def for_training(cls, rs: ResolvedSpec, data: MultimodalData, run_dir: str, *, env: DistEnv | None = None,
                     progress: bool = True) -> Trainer:
        """A trainer whose run is reproducible: :func:`prepare_process` (threads, seeds), then the model is
        built, then :func:`apply_thread_policy` sets torch's threads for its size.

        Every rank builds the same initial weights from ``spec.seed``; ranks other than 0 then reseed
        (:func:`~mmcore.train.distributed.rank_seed`) so each draws its own dropout masks. Sets global
        state (torch's thread count, every random stream): call it from an entry point.
        """
        env = env or DistEnv()
        prepare_process(rs.spec)
        trainer = cls(rs, data, run_dir, env=env, progress=progress)
        apply_thread_policy(rs.spec, trainer.model)
        if env.rank > 0:
            seed_everything(rank_seed(rs.spec.seed, env.rank))
        return trainer

    # ------------------------------------------------------------------ setup
    def _make_scheduler(self):
        t = self.spec.train
        if t.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=t.epochs)
        if t.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=t.step_size, gamma=t.gamma)
        return None

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.spec.train.compile:
            # in place, so evaluation (self.model) runs compiled too; compile the inner module, then
            # wrap it in DDP — the order PyTorch recommends (DDPOptimizer splits at bucket boundaries)
            model.compile()
        if not self.env.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        # a step that trains a subset of the parameters, or a component that skips some of its
        # parameters in some forwards, leaves parameters without gradients, which DDP must expect
        multi_step = any(len(ph.steps) > 1 or ph.steps[0].params != ("*",) for ph in self.phases)
        unused = multi_step or any(capabilities.has_unused_parameters(m) for m in model.modules())
        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                   find_unused_parameters=unused)

    def _check_metric(self) -> None:
        """The select_metric rule of spec validation, against the metrics this dataset really produces."""
        info = self.data.info
        problem = select_metric_problem(self.metric, metric_names(info.metric_set), what=info.metric_set,
                                        why="the dataset's metric set")
        if problem:
            raise SpecError([SpecIssue(self.rs.where(("train", "select_metric")), "train.select_metric", *problem)])

    def _autocast(self):
        if self.spec.train.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ checkpoints
    def _payload(self, rng_ranks: list[dict[str, Any]]) -> dict[str, Any]:
        """What best.pt and last.pt hold (one shape: :func:`~mmcore.train.checkpoint.training_payload`)."""
        return training_payload(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                                scheduler=self.scheduler.state_dict() if self.scheduler else None,
                                state=self.state.__dict__, rng_ranks=rng_ranks, spec=self.rs.to_data())

    def _path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def resume(self) -> None:
        """Load ``last.pt`` from the run directory and continue after its last finished epoch.

        Under DDP rank 0 reads the file and sends it to the others (the run directory need not be
        on a shared file system); each rank restores its own random state when the number of
        processes is unchanged.
        """
        env, path = self.env, self._path("last.pt")
        payload = on_main(lambda: training_state(load_checkpoint(path), path), env)
        saved, mine = payload["spec"], self.rs.to_data()
        diff = spec_diff(saved, mine, ignore={("train", "epochs"), ("train", "patience")})
        if diff:
            raise CheckpointError(f"{self.run_dir}: the spec differs from the one this run was started with "
                                  f"({'; '.join(diff[:5])}); resume with the run's own spec ({self._path('spec.yaml')})")
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{self._path('last.pt')}: weights do not fit this pipeline ({e})") from e
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler and payload.get("scheduler"):
            self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainState(**payload["state"])
        ranks = payload["rng_ranks"]
        if len(ranks) == env.world_size:
            set_rng_state(ranks[env.rank])
        else:
            set_rng_state(ranks[0])
            if env.rank > 0:
                seed_everything(rank_seed(self.spec.seed + self.state.epoch, env.rank))
            if env.is_main:
                log.warning("%s was written by %d process(es) and is resumed by %d: batches and metrics are unchanged, "
                            "but the random streams (dropout) are re-derived, so this run will not be bit-identical to "
                            "an uninterrupted one", self._path("last.pt"), len(ranks), env.world_size)
        log.info("resumed %s after epoch %d (best %s at epoch %s)", self.run_dir, self.state.epoch,
                 self.state.best_score, self.state.best_epoch)

    # ------------------------------------------------------------------ training
    def _train_epoch(self, epoch: int, phase: Phase) -> dict[str, float]:
        """One epoch over this rank's share of the training split; the mean of each logged loss term."""
        t, env = self.spec.train, self.env
        self.forward_model.train()
        per_rank = max(1, t.batch_size // env.world_size)
        g = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + epoch)  # same order on every rank
        split = self.data.split("train")
        rows = real_rows(len(split), per_rank, env.rank, env.world_size)
        stepper = BatchStepper(self.model, self.forward_model, self.optimizer, env, self.train_protocol,
                               self.spec.seed, t.grad_clip, self._autocast, self.run_dir)
        terms = TermMeans()
        bar = progress_bar(len(rows), f"epoch {epoch + 1}/{t.epochs} (phase {phase.name})", self.progress)
        batches = iterate_batches(split, per_rank, shuffle=True, generator=g, rank=env.rank, world_size=env.world_size)
        for batch, (mine, everyone) in zip(batches, rows, strict=True):
            if 0 < mine < batch.batch_size:  # drop the sampler's padding repeats: those rows would count twice
                batch = split.batch(batch.index[:mine])
            stepper.run(batch.to(self.device), phase, epoch, mine, everyone, terms)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(terms.postfix())
        if bar is not None:
            bar.close()
        if env.distributed:  # the epoch's mean over every rank's rows, as one process would log it
            terms = TermMeans.merged(gather_objects((terms.sums, terms.counts), env))
        broadcast_module(self.model, env)  # evaluate and save exactly rank 0's parameters and buffers
        return terms.means()

    @torch.no_grad()
    def predict(self, split: Split, protocol: MissingProtocol, split_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions and labels for a whole split under ``protocol``, gathered across ranks."""
        env, t = self.env, self.spec.train
        self.forward_model.eval()
        self.model.set_step("eval", "eval")  # components that switch behaviour per step learn it is evaluation
        preds, labels, index = [], [], []
        per_rank = -(-(t.eval_batch_size or 2 * t.batch_size) // env.world_size)  # a global size, as batch_size
        for batch in iterate_batches(split, per_rank, rank=env.rank, world_size=env.world_size):
            batch = protocol.apply(batch.to(self.device), seed=self.spec.seed, epoch=None, split=split_name)
            with self._autocast():
                out = self.model(batch)  # no DDP wrapper for inference: no gradient sync needed
            preds.append(out.pred.float())
            labels.append(batch.labels)
            index.append(batch.index)
        pred, lab, idx = (gather_rows(torch.cat(x), env) for x in (preds, labels, index))
        if env.distributed:  # drop the rows DistributedSampler-style padding repeated, restore order
            order = torch.argsort(idx, stable=True)
            pred, lab, idx = pred[order], lab[order], idx[order]
            first = torch.ones_like(idx, dtype=torch.bool)
            first[1:] = idx[1:] != idx[:-1]
            pred, lab = pred[first], lab[first]
        return pred.cpu(), lab.cpu()

    def evaluate(self, split_name: str, protocol: MissingProtocol | None = None) -> dict[str, float]:
        """Metrics on a whole split (exact under DDP: computed on the gathered predictions)."""
        protocol = protocol or self.eval_protocol
        pred, lab = self.predict(self.data.split(split_name), protocol, split_name)
        metrics = {"loss": float(self.model.head.loss(pred.to(self.device), lab.to(self.device)))}
        metrics.update(compute_metrics(pred.numpy(), lab.numpy(), self.data.info))
        return metrics

    def fit(self) -> dict[str, Any]:
        """Train to the end (or early stop), then evaluate the selected model on test once."""
        t, env = self.spec.train, self.env
        mode = _mode(self.metric)
        while self.state.epoch < t.epochs and not self.state.stopped_early:
            epoch = self.state.epoch
            phase = phase_at(self.phases, epoch)
            start = time.perf_counter()
            train_terms = self._train_epoch(epoch, phase)
            if self.scheduler:
                self.scheduler.step()
            val = self.evaluate("valid")
            score = val[self.metric]
            improved = phase.select and _better(score, self.state.best_score, mode)
            if improved:
                self.state.best_score, self.state.best_epoch, self.state.stale = score, epoch + 1, 0
            elif phase.select:
                self.state.stale += 1
            record = {"epoch": epoch + 1, "phase": phase.name, "lr": self.optimizer.param_groups[0]["lr"],
                      "seconds": round(time.perf_counter() - start, 3),
                      **{f"train_{k}": v for k, v in train_terms.items()}, **{f"valid_{k}": v for k, v in val.items()},
                      "best": improved}
            self.state.history.append(record)
            self.state.epoch = epoch + 1
            if t.patience and self.state.stale >= t.patience:
                self.state.stopped_early = True
            rng_ranks = gather_objects(rng_state(), env)  # each rank's stream, so resume continues all of them
            if env.is_main:
                payload = self._payload(rng_ranks)
                if improved:
                    save_checkpoint(self._path("best.pt"), payload)
                save_checkpoint(self._path("last.pt"), payload)
                write_metrics(self.run_dir, self.state.history)
            # "phase": the training phase (mmcore.phases) this epoch ran; "train" unless the model declares
            # others (e.g. warm-up); "*" marks a new best on validation
            log.info("epoch %d/%d (phase %s) train %s | valid %s%s (%.1fs)", epoch + 1, t.epochs, phase.name,
                     _fmt(train_terms), _fmt({k: v for k, v in val.items() if k in (self.metric, "loss", "mae", "corr", "acc")}),
                     " *" if improved else "", record["seconds"])
            if self.state.stopped_early:
                log.info("early stopping: no %s improvement for %d epochs", self.metric, t.patience)
        return self.finish()

    def load_best(self) -> None:
        """Load ``best.pt`` (rank 0 reads it and sends the weights to the other ranks)."""
        path = self._path("best.pt")
        state = on_main(lambda: load_checkpoint(path)["model"] if os.path.exists(path) else None, self.env)
        if state is not None:
            self.model.load_state_dict(state)
        elif self.env.is_main:
            log.warning("no best.pt (no selectable epoch improved); evaluating the last weights")

    def finish(self) -> dict[str, Any]:
        self.load_best()
        test = self.evaluate("test")
        train_labels = self.data.split("train").labels
        results = {"best_epoch": self.state.best_epoch, "select_metric": self.metric,
                   "best_valid": self.state.best_score, "epochs_run": self.state.epoch,
                   "stopped_early": self.state.stopped_early, "test": test,
                   "baselines": _baselines(train_labels, self.data.split("test").labels, self.data.info)}
        alignment = self._alignment("test")
        if alignment is not None:
            results["alignment"] = alignment
        if self.env.is_main:
            write_json(self._path("results.json"), results)
            close_tensorboard(self.run_dir)
        # file_only: the CLI prints the test metrics once on stdout; train.log still records them
        log.info("test (best epoch %s): %s", self.state.best_epoch, _fmt(test), extra={"file_only": True})
        return results

    def _alignment(self, split: str) -> dict[str, Any] | None:
        """Alignment accuracy on ``split`` when the data knows the true alignment and the aligner has plans."""
        from ..alignment import AlignmentUnavailable, evaluate_alignment, format_alignment

        if not self.env.is_main or self.data.alignment_truth(split) is None:
            return None
        try:
            res = evaluate_alignment(self.model, self.data, split, device=self.device,
                                     batch_size=self.spec.train.eval_batch_size or 2 * self.spec.train.batch_size)
        except AlignmentUnavailable as e:
            log.debug("alignment accuracy not computed: %s", e)
            return None
        log.info("%s", format_alignment(res))
        return res


def _fmt(d: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def _baselines(train_labels: torch.Tensor, test_labels: torch.Tensor, info) -> dict[str, dict[str, float]]:
    """Test metrics of the constant predictor that always outputs the train-label mean (or mode)."""
    if info.task != "regression":
        mode = int(torch.mode(train_labels.long()).values)
        logits = np.zeros((len(test_labels), max(info.num_classes, 2)))
        logits[:, mode] = 1.0
        return {"train_majority": compute_metrics(logits, test_labels.numpy(), info)}
    mean = float(train_labels.float().mean())
    pred = np.full(len(test_labels), mean, dtype=np.float32)
    return {"train_mean": {"value": mean, **compute_metrics(pred, test_labels.numpy(), info)}}
