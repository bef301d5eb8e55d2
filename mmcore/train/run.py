"""``mmcore run`` and ``mmcore eval``: run directories around the :class:`Trainer`.

A run directory holds ``spec.yaml`` (the resolved spec, every default filled in),
``metrics.jsonl``/``metrics.csv`` (per epoch), ``last.pt`` (resume), ``best.pt`` (selected on
validation), ``results.json`` (test metrics of the selected model and the train-mean baseline),
``train.log``, and ``missing_rates.csv``/``.json`` when evaluated across rates (``missing_rates_valid.*``
for ``mmcore eval --split valid``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

import yaml

from ..errors import CheckpointError
from ..missing import MissingOp, MissingProtocol, format_rate_table, sweep_rates
from ..spec import ResolvedSpec, load_spec
from ..spec.validate import spec_from_dict
from .checkpoint import atomic_write_text, load_checkpoint, write_json
from .distributed import DistEnv, broadcast_object, init_distributed, on_main, shutdown

log = logging.getLogger("mmcore.train")


def parse_rates(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        from ..errors import MmcoreUserError

        raise MmcoreUserError(f"--missing-rates {text!r}: expected comma-separated numbers, e.g. 0,0.3,0.5") from None
    bad = [r for r in rates if not 0 <= r <= 1]
    if bad:
        from ..errors import MmcoreUserError

        raise MmcoreUserError(f"--missing-rates: {bad} outside [0, 1]")
    return rates


def default_run_dir(rs: ResolvedSpec) -> str:
    stem = os.path.splitext(os.path.basename(rs.source.name if rs.source else "spec"))[0]
    return os.path.join(rs.spec.output_dir, f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")


def prepare_run_dir(run_dir: str, rs: ResolvedSpec, resume: bool) -> None:
    """Create the run directory; refuse to overwrite a run unless resuming (never lose a checkpoint)."""
    if resume:
        if not os.path.exists(os.path.join(run_dir, "last.pt")):
            raise CheckpointError(f"{run_dir}: nothing to resume (no last.pt); run without --resume to start it")
        return
    if os.path.exists(os.path.join(run_dir, "last.pt")) or os.path.exists(os.path.join(run_dir, "results.json")):
        raise CheckpointError(f"{run_dir}: a run already exists here; add --resume to continue it, or choose another --out")
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_text(os.path.join(run_dir, "spec.yaml"), yaml.safe_dump(rs.to_data(), sort_keys=False))


def _attach_log_file(run_dir: str) -> logging.Handler:
    h = logging.FileHandler(os.path.join(run_dir, "train.log"))
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mmcore").addHandler(h)
    return h


def evaluate_rates(trainer, rates: list[float], split: str = "test") -> list[dict[str, float]]:
    """Metrics on ``split`` with every eval op's rate set to each rate (temporal masking of all
    modalities when the spec has no eval ops)."""
    from ..errors import MmcoreUserError

    proto = trainer.eval_protocol
    if not proto.ops:
        mask_with = {m: ms.resolved_mask_with(m) for m, ms in trainer.spec.modalities.items()}
        proto = MissingProtocol([MissingOp(type="temporal", rate=0.0)], mask_with)
    try:
        for r in rates:
            proto.with_rate(r)
    except ValueError as e:
        raise MmcoreUserError(f"--missing-rates: {e} (eval protocol: {proto.describe()})") from None
    return sweep_rates(proto, rates, lambda p: trainer.evaluate(split, p))


def write_rate_table(run_dir: str, rows: list[dict[str, float]], split: str) -> list[str]:
    """``missing_rates.{json,csv}`` in ``run_dir`` (``missing_rates_valid.*`` for the valid split, so test's
    table, the one ``mmcore plot missing`` draws, is never replaced); returns the paths written."""
    stem = os.path.join(run_dir, "missing_rates" if split == "test" else f"missing_rates_{split}")
    write_json(stem + ".json", {"split": split, "rows": rows})
    cols = list(dict.fromkeys(k for r in rows for k in r))
    atomic_write_text(stem + ".csv",
                      "\n".join([",".join(cols)] + [",".join(f"{r.get(c, '')}" for c in cols) for r in rows]) + "\n")
    return [stem + ".csv", stem + ".json"]


def train_run(rs: ResolvedSpec, run_dir: str | None = None, *, resume: bool = False, progress: bool = True,
              missing_rates: list[float] | None = None, env: DistEnv | None = None) -> dict:
    """Train a resolved spec into ``run_dir``; returns results (also written to results.json).

    Without ``env`` it joins the process group torchrun describes (if any) and leaves it at the
    end; with ``env`` the caller owns the group (several runs in one group, as in tests).
    """
    own = env is None
    env = env or init_distributed(rs.spec.train.device)
    quiet = _quiet_unless_main(env)
    finished = False
    try:
        # the Trainer (and the DDP wrapper holding the process group) lives in _train's frame only,
        # so shutdown() below can free the group while the interpreter is fully alive
        results = _train(rs, run_dir, env, resume=resume, progress=progress, missing_rates=missing_rates)
        finished = True
        return results
    finally:
        if quiet is not None:
            logging.getLogger("mmcore").setLevel(quiet)
        if own:
            shutdown(env, wait_for_all=finished)


def _train(rs: ResolvedSpec, run_dir: str | None, env: DistEnv, *, resume: bool, progress: bool,
           missing_rates: list[float] | None) -> dict:
    from ..data.load import load_dataset
    from .process import thread_choice
    from .trainer import Trainer

    run_dir = broadcast_object(run_dir or default_run_dir(rs), env)
    # a folder this call creates is removed again if the run ends before its first checkpoint
    fresh = not resume and not (os.path.isdir(run_dir) and os.listdir(run_dir))
    on_main(lambda: prepare_run_dir(run_dir, rs, resume), env)  # its error stops every rank, not only rank 0
    handler = _attach_log_file(run_dir) if env.is_main else None
    if env.is_main:
        log.info("run folder: %s", run_dir)
    finished = False
    try:
        data = load_dataset(rs)
        trainer = Trainer.for_training(rs, data, run_dir, env=env, progress=progress)
        if env.is_main:
            log.info("torch threads: %d (%s; set train.num_threads to choose)", *thread_choice(rs.spec, trainer.model))
            _write_provenance(run_dir, rs, data, trainer.device, resume)
        if resume:
            trainer.resume()
        results = trainer.fit()
        if missing_rates:
            rows = evaluate_rates(trainer, missing_rates)
            results["missing_rates"] = rows
            if env.is_main:
                paths = write_rate_table(run_dir, rows, "test")
                log.info("test across missing rates (wrote %s):\n%s", ", ".join(paths), format_rate_table(rows))
        results["run_dir"] = run_dir
        finished = True
        return results
    except KeyboardInterrupt:
        raise RunInterrupted(_interrupted_message(rs, run_dir, fresh)) from None
    finally:
        if handler is not None:
            logging.getLogger("mmcore").removeHandler(handler)
            handler.close()
        if not finished and fresh and env.is_main and not os.path.exists(os.path.join(run_dir, "last.pt")):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing to resume from: leave no orphan folder


def _write_provenance(run_dir: str, rs: ResolvedSpec, data, device, resume: bool) -> None:
    """provenance.json: what produced the run; a resume is appended under ``resumed``."""
    from .provenance import FILE, collect

    path = os.path.join(run_dir, FILE)
    rec = collect(rs, data, device)
    if resume and os.path.exists(path):
        with open(path) as f:
            first = json.load(f)
        first.setdefault("resumed", []).append(rec)
        rec = first
    write_json(path, rec)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what was kept and how to continue."""


def _interrupted_message(rs: ResolvedSpec, run_dir: str, fresh: bool) -> str:
    last = os.path.join(run_dir, "last.pt")
    if os.path.exists(last):
        spec = rs.source.name if rs.source is not None else "SPEC"
        return (f"interrupted; {last} keeps the last finished epoch: continue with "
                f"mmcore run {spec} --out {run_dir} --resume")
    if fresh:
        return "interrupted before the first epoch finished: nothing to resume (the new run folder was removed)"
    return f"interrupted before the first epoch finished; {run_dir} has no checkpoint to resume from"


def _quiet_unless_main(env: DistEnv) -> int | None:
    """On ranks other than 0, show mmcore's warnings and errors only; returns the level to restore."""
    if env.is_main:
        return None
    logger = logging.getLogger("mmcore")
    old = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    return old


def format_summary(results: dict) -> str:
    """The lines `mmcore run` prints at the end: run folder, selected epoch, test metrics, the train-mean baseline."""
    test = results["test"]
    keys = [k for k in ("mae", "corr", "acc2_has0", "acc2_non0", "f1_non0", "acc7", "acc", "f1_weighted") if k in test]
    lines = [f"run: {results['run_dir']}", f"best epoch: {results['best_epoch']} (valid {results['select_metric']} = "
             f"{results['best_valid']:.4f})" if results["best_valid"] is not None else "best epoch: none",
             "test: " + "  ".join(f"{k}={test[k]:.4f}" for k in keys)]
    base = results.get("baselines", {}).get("train_mean")
    if base and "mae" in base:
        lines.append(f"train-mean predictor: test mae={base['mae']:.4f}")
    return "\n".join(lines)


def load_run(run_dir: str, data_path: str | None = None):
    """Rebuild a finished run's trainer with its best weights (for eval and plots)."""
    from ..spec.yaml_source import data_overrides
    from ..data.load import load_dataset
    from ..spec.yaml_source import Source, apply_overrides
    from .process import apply_thread_policy, prepare_process
    from .trainer import Trainer

    spec_path = os.path.join(run_dir, "spec.yaml")
    if not os.path.exists(spec_path):
        raise CheckpointError(f"{run_dir}: not a run directory (no spec.yaml); pass the directory `mmcore run` created")
    with open(spec_path) as f:
        data = yaml.safe_load(f)
    if data_path:
        src = apply_overrides(Source(name=spec_path, data=data), data_overrides(data_path))
        data = src.data
    rs = spec_from_dict(data, name=spec_path)
    dataset = load_dataset(rs)
    prov = os.path.join(run_dir, "provenance.json")
    if os.path.exists(prov):
        from .provenance import check_data_unchanged

        with open(prov) as f:
            for warning in check_data_unchanged(json.load(f), dataset):
                log.warning("warning: %s", warning)
    prepare_process(rs.spec)  # the seeds (and a train.num_threads) the run was trained with, before the model is built
    trainer = Trainer(rs, dataset, run_dir, progress=False)
    apply_thread_policy(rs.spec, trainer.model)  # the threads the run was trained with
    best = os.path.join(run_dir, "best.pt")
    trainer.model.load_state_dict(load_checkpoint(best if os.path.exists(best) else os.path.join(run_dir, "last.pt"))["model"])
    return trainer
