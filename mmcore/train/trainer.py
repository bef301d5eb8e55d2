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
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__, capabilities
from ..builder import build
from ..data.base import MultimodalData, Split, iterate_batches
from ..errors import CheckpointError, SpecError, SpecIssue, TrainingDivergedError
from ..metrics import METRIC_MODES, compute_metrics
from ..missing import MissingProtocol
from ..phases import DEFAULT_PHASES, Phase, phase_at
from ..pipeline import Pipeline
from ..spec import ResolvedSpec
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint, write_json
from .distributed import (DistEnv, broadcast_module, gather_objects, gather_rows, on_main, rank_seed, ranks_where,
                          real_rows, sum_across_ranks)

log = logging.getLogger("mmcore.train")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """Every random stream, as tensors and plain data (checkpoints are read with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (kind, keys.tolist(), int(pos), int(has_gauss), float(gauss))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]  # keys: a list (this version) or an array (older checkpoints)
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    """Train one pipeline on one dataset, writing everything into ``run_dir`` (rank 0 only)."""

    def __init__(self, rs: ResolvedSpec, data: MultimodalData, run_dir: str, *, env: DistEnv | None = None,
                 progress: bool = True):
        self.rs, self.spec, self.data, self.run_dir = rs, rs.spec, data, run_dir
        self.env = env or DistEnv()
        self.progress = progress and self.env.is_main
        t = self.spec.train
        self.device = self.env.device
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        seed_everything(self.spec.seed)
        self.model: Pipeline = build(rs, data.info).to(self.device)
        if self.env.rank > 0:  # same initial weights on every rank, but independent dropout masks per rank
            seed_everything(rank_seed(self.spec.seed, self.env.rank))
        ws = self.env.world_size
        if self.env.is_main and self.env.distributed and t.batch_size % ws:
            per = max(1, t.batch_size // ws)
            log.warning("train.batch_size %d is not a multiple of the %d processes: each takes %d rows, so the global "
                        "batch is %d; set batch_size to a multiple of %d to train with the batch the spec names",
                        t.batch_size, ws, per, per * ws, ws)
        self.phases: tuple[Phase, ...] = self.model.training_phases(t.epochs) or DEFAULT_PHASES
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.scheduler = self._make_scheduler()
        mask_with = {m: ms.resolved_mask_with(m) for m, ms in self.spec.modalities.items()}
        self.train_protocol = MissingProtocol(self.spec.missing.train, mask_with)
        self.eval_protocol = MissingProtocol(self.spec.missing.eval_ops(), mask_with)
        self.state = TrainState()
        self.metric = t.select_metric
        self._check_metric()
        self.forward_model = self._wrap(self.model)

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
        probe = compute_metrics(np.array([0.5, -0.5, 1.0, -1.0]), np.array([0.4, -0.6, 1.0, -1.0]), self.data.info) \
            if self.data.info.task == "regression" else \
            compute_metrics(np.eye(max(self.data.info.num_classes, 2))[:2], np.array([0, 1]), self.data.info)
        names = ["loss", *probe]
        if self.metric not in names:
            import difflib

            where = self.rs.source.where(("train", "select_metric")) if self.rs.source else "spec"
            close = difflib.get_close_matches(self.metric, names, n=1)
            hints = ((f"did you mean {close[0]!r}?",) if close else ()) + (f"metrics for this dataset: {', '.join(names)}",)
            raise SpecError([SpecIssue(where, "train.select_metric", f"unknown metric {self.metric!r}", hints)])

    def _autocast(self):
        if self.spec.train.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ checkpoints
    def _payload(self, rng_ranks: list[dict[str, Any]]) -> dict[str, Any]:
        return {"mmcore_version": __version__, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "state": self.state.__dict__, "rng": rng_ranks[0], "rng_ranks": rng_ranks, "spec": self.rs.to_data()}

    def _path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def resume(self) -> None:
        """Load ``last.pt`` from the run directory and continue after its last finished epoch.

        Under DDP rank 0 reads the file and sends it to the others (the run directory need not be
        on a shared file system); each rank restores its own random state when the number of
        processes is unchanged.
        """
        env = self.env
        payload = on_main(lambda: load_checkpoint(self._path("last.pt")), env)
        saved, mine = payload["spec"], self.rs.to_data()
        diff = _spec_diff(saved, mine, ignore={("train", "epochs"), ("train", "patience")})
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
        ranks = payload.get("rng_ranks") or [payload["rng"]]
        if len(ranks) == env.world_size:
            _set_rng_state(ranks[env.rank])
        else:
            _set_rng_state(ranks[0])
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
        t, env = self.spec.train, self.env
        self.forward_model.train()
        per_rank = max(1, t.batch_size // env.world_size)
        g = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + epoch)  # same order on every rank
        split = self.data.split("train")
        rows = real_rows(len(split), per_rank, env.rank, env.world_size)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        bar = _progress(len(rows), f"epoch {epoch + 1}/{t.epochs} (phase {phase.name})", self.progress)
        batches = iterate_batches(split, per_rank, shuffle=True, generator=g, rank=env.rank, world_size=env.world_size)
        for batch, (mine, everyone) in zip(batches, rows, strict=True):
            if 0 < mine < batch.batch_size:  # drop the sampler's padding repeats: those rows would count twice
                batch = split.batch(batch.index[:mine])
            # DDP averages gradients over ranks: weighting each rank's batch-mean loss by its share of
            # the global batch makes that average the single-process gradient of the whole batch, an
            # uneven last batch included (a rank whose rows are all padding gets weight 0)
            scale = mine * env.world_size / everyone
            batch = batch.to(self.device)
            for step in phase.steps:
                b = self.train_protocol.apply(batch, seed=self.spec.seed, epoch=epoch, split="train") if step.missing else batch
                step_scale, n_rows = scale, mine
                if step.rows == "complete":
                    b, n_rows, step_scale = self._complete_rows(b, mine)
                    if b is None:
                        continue  # no complete row on any rank: nothing to learn from in this step
                self.model.set_step(phase.name, step.name)
                with self._autocast():
                    out = self.forward_model(b)
                loss, terms = self.model.total_loss(_fp32(out), b.labels, step)  # the loss in fp32 under bf16 too
                bad = ranks_where(not bool(torch.isfinite(loss)), env)  # all ranks stop, not just the diverged one
                if bad:
                    raise TrainingDivergedError(
                        f"non-finite loss at epoch {epoch + 1}, step {step.name!r}"
                        + (f" on rank(s) {', '.join(map(str, bad))}" if env.distributed else "") + ": "
                        + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                        + f"; lower train.lr, enable train.grad_clip, or check the data for NaN/inf (checkpoints up to epoch "
                        f"{epoch} are kept in {self.run_dir})")
                self.optimizer.zero_grad(set_to_none=True)
                (loss * step_scale if env.distributed else loss).backward()
                if step.params != ("*",):
                    for name, p in self.model.named_parameters():
                        if not step.selects_param(name):
                            p.grad = None
                if t.grad_clip:
                    torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], t.grad_clip)
                self._optimizer_step(step.lr_scale)
                for k, v in terms.items():
                    if step.selects_loss(k):  # log what this step optimised, not every term it computed
                        key = f"{step.name}/{k}" if len(phase.steps) > 1 else k
                        sums[key] = sums.get(key, 0.0) + float(v.detach()) * n_rows
                        counts[key] = counts.get(key, 0) + n_rows
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(" ".join(f"{k}={v / max(counts[k], 1):.4f}" for k, v in list(sums.items())[:4]))
        if bar is not None:
            bar.close()
        if env.distributed:  # the epoch's mean over every rank's rows, as one process would log it
            parts = gather_objects((sums, counts), env)
            keys = list(dict.fromkeys(k for p in parts for k in p[0]))
            sums = {k: sum(p[0].get(k, 0.0) for p in parts) for k in keys}
            counts = {k: sum(p[1].get(k, 0) for p in parts) for k in keys}
        broadcast_module(self.model, env)  # evaluate and save exactly rank 0's parameters and buffers
        return {k: v / max(counts[k], 1) for k, v in sums.items()}

    def _optimizer_step(self, lr_scale: float) -> None:
        """One AdamW step; a step's ``lr_scale`` scales the learning rate for that step only."""
        if lr_scale == 1.0:
            self.optimizer.step()
            return
        saved = [g["lr"] for g in self.optimizer.param_groups]
        for g in self.optimizer.param_groups:
            g["lr"] = g["lr"] * lr_scale
        try:
            self.optimizer.step()
        finally:
            for g, lr in zip(self.optimizer.param_groups, saved):
                g["lr"] = lr

    def _complete_rows(self, b, mine: int):
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
            rng_ranks = gather_objects(_rng_state(), env)  # each rank's stream, so resume continues all of them
            if env.is_main:
                if improved:
                    save_checkpoint(self._path("best.pt"), {"mmcore_version": __version__, "model": self.model.state_dict(),
                                                            "epoch": epoch + 1, "score": score, "spec": self.rs.to_data()})
                save_checkpoint(self._path("last.pt"), self._payload(rng_ranks))
                self._write_metrics(record)
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
            _close_tensorboard(self.run_dir)
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

    def _write_metrics(self, record: dict) -> None:
        # rewritten whole from the checkpointed history, so it always agrees with last.pt after a resume
        atomic_write_text(self._path("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in self.state.history))
        cols = list(dict.fromkeys(k for r in self.state.history for k in r))
        lines = [",".join(cols)] + [",".join(_csv(r.get(c, "")) for c in cols) for r in self.state.history]
        atomic_write_text(self._path("metrics.csv"), "\n".join(lines) + "\n")
        _tensorboard(self.run_dir, record)


def _fp32(out):
    """The pipeline output with prediction and auxiliary losses in float32 (bf16 under autocast)."""
    return out._replace(pred=out.pred.float(), aux={k: v.float() for k, v in out.aux.items()})


def _csv(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


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


def _spec_diff(a: Any, b: Any, path: tuple = (), ignore: set = frozenset()) -> list[str]:
    if path in ignore:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _spec_diff(a.get(k), b.get(k), path + (k,), ignore)
        return out
    return [] if a == b else [f"{'.'.join(map(str, path))}: {a!r} -> {b!r}"]


def _progress(total: int, desc: str, enabled: bool):
    """A tqdm bar (batches, rate, ETA) on a terminal; elsewhere (logs, CI) a log line once a minute."""
    if not enabled:
        return None
    import sys

    if not sys.stderr.isatty():
        return _LogTicker(total, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


class _LogTicker:
    """tqdm's update/set_postfix_str/close for non-terminals: logs progress every ``every`` seconds."""

    def __init__(self, total: int, desc: str, every: float = 60.0):
        self.total, self.desc, self.every, self.n = total, desc, every, 0
        self.start = self.last = time.perf_counter()
        self.postfix = ""

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if now - self.last >= self.every and self.n < self.total:
            rate = self.n / (now - self.start)
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d batches, %.2f batch/s, about %.0f s left %s", self.desc, self.n, self.total, rate,
                     eta, self.postfix)
            self.last = now

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        pass


_tb_writers: dict[str, Any] = {}


def _tensorboard(run_dir: str, record: dict) -> None:
    """Mirror the epoch record to TensorBoard when it is installed (optional extra)."""
    import importlib.util

    if importlib.util.find_spec("torch.utils.tensorboard") is None or importlib.util.find_spec("tensorboard") is None:
        return
    from torch.utils.tensorboard import SummaryWriter

    w = _tb_writers.get(run_dir) or _tb_writers.setdefault(run_dir, SummaryWriter(os.path.join(run_dir, "tb")))
    for k, v in record.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
            w.add_scalar(k, v, record["epoch"])
    w.flush()


def _close_tensorboard(run_dir: str) -> None:
    w = _tb_writers.pop(run_dir, None)
    if w is not None:
        w.close()
