"""Atomic checkpoints: write to a temporary file in the same directory, fsync, then rename.

A crash or Ctrl-C mid-write leaves the previous checkpoint intact; a corrupt or foreign file
raises :class:`~mmcore.errors.CheckpointError` saying which file and what to do.

Checkpoints hold tensors and plain data only (dicts, lists, tuples, numbers, strings) and are read
with ``torch.load(weights_only=True)``: a file from someone else cannot run code when ``mmcore eval``,
``mmcore plot`` or ``--resume`` reads it — a file holding any other object is refused, naming it.
Checkpoints written before this rule kept numpy's RNG state as an array: numpy's array
reconstruction (and nothing else) is allowed so that they still load.

``best.pt`` and ``last.pt`` hold one payload shape, :func:`training_payload` (``format`` 2): the
weights and everything needed to continue training after that epoch. Older checkpoints still load:
``last.pt`` of format 1 had the same keys plus ``rng`` (rank 0's random state) and no ``format``;
``best.pt`` of format 1 held the weights only (``model``, ``epoch``, ``score``, ``spec``), enough for
``mmcore eval``/``plot`` but not for ``--resume`` (:func:`training_state` says so).
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import CheckpointError

#: The payload shape written by :func:`training_payload` (see the module docstring for format 1).
FORMAT = 2


def atomic_write_bytes(path: str, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path`` and rename it over ``path``."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _numpy_array_globals() -> list:
    """numpy's array reconstruction, which checkpoints of mmcore <= 0.1.0 need for their RNG state."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`: tensors and plain data only, never code."""
    import pickle

    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no checkpoint here; start without --resume, or point --out at the run to resume")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))  # torch names the type it refused ("unsupported GLOBAL x")
        if found is None:  # not a disallowed type: a truncated or foreign file
            raise CheckpointError(f"{path}: cannot read checkpoint ({_first_line(e)}); the file is corrupt or not an "
                                  "mmcore checkpoint — resume from best.pt or start a new run") from None
        # weights_only met a type it does not allow: refuse, never execute
        what = f"an object of type {found.group(1)}"
        raise CheckpointError(f"{path}: refused: the file holds {what}, which mmcore checkpoints never contain; "
                              "loading it could run code. It is not an mmcore checkpoint or it was altered — do not "
                              "load files you do not trust; retrain, or resume from a checkpoint you wrote") from None
    except Exception as e:  # torch raises many types for a truncated/foreign file; keep the cause
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e}); the file is corrupt or not "
                              "an mmcore checkpoint — resume from best.pt or start a new run") from e
    if not isinstance(payload, dict) or "model" not in payload or "mmcore_version" not in payload:
        raise CheckpointError(f"{path}: not an mmcore checkpoint (keys: {sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__})")
    return payload


def training_payload(*, model: dict, optimizer: dict, scheduler: dict | None, state: dict[str, Any],
                     rng_ranks: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    """The one payload of ``best.pt`` and ``last.pt``.

    Args:
        model: the pipeline's ``state_dict()``.
        optimizer: the optimiser's ``state_dict()``.
        scheduler: the learning-rate scheduler's ``state_dict()``, or None without a scheduler.
        state: the trainer's :class:`~mmcore.train.trainer.TrainState` as a dict (epoch, best score, history…).
        rng_ranks: every rank's random state (:func:`rng_state`), by rank.
        spec: the resolved spec as plain data (``--resume`` refuses another spec).
    """
    return {"format": FORMAT, "mmcore_version": __version__, "spec": spec, "model": model, "optimizer": optimizer,
            "scheduler": scheduler, "state": state, "rng_ranks": rng_ranks}


def training_state(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """``payload`` in the current shape, for ``--resume``; a weights-only checkpoint is refused.

    Raises:
        CheckpointError: ``payload`` is a format-1 ``best.pt`` (weights only, nothing to resume).
    """
    if "optimizer" not in payload or "state" not in payload:
        raise CheckpointError(f"{path}: holds weights only (a best.pt written by mmcore <= 0.1.0), not the training "
                              "state --resume needs; resume from the run's last.pt, or start a new run")
    if "rng_ranks" not in payload:  # format 1: rank 0's random state only
        payload = {**payload, "rng_ranks": [payload["rng"]]}
    return {**payload, "format": FORMAT}


def rng_state() -> dict[str, Any]:
    """Every random stream, as tensors and plain data (checkpoints are read with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (kind, keys.tolist(), int(pos), int(has_gauss), float(gauss))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the random streams :func:`rng_state` captured."""
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]  # keys: a list (this version) or an array (older checkpoints)
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def spec_diff(a: Any, b: Any, path: tuple = (), ignore: set = frozenset()) -> list[str]:
    """Where two specs (as plain data) differ, one ``"a.b: old -> new"`` per leaf; ``ignore`` skips paths."""
    if path in ignore:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += spec_diff(a.get(k), b.get(k), path + (k,), ignore)
        return out
    return [] if a == b else [f"{'.'.join(map(str, path))}: {a!r} -> {b!r}"]
