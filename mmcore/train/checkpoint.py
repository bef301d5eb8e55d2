"""Atomic checkpoints: write to a temporary file in the same directory, fsync, then rename.

A crash or Ctrl-C mid-write leaves the previous checkpoint intact; a corrupt or foreign file
raises :class:`~mmcore.errors.CheckpointError` saying which file and what to do.

Checkpoints hold tensors and plain data only (dicts, lists, tuples, numbers, strings) and are read
with ``torch.load(weights_only=True)``: a file from someone else cannot run code when ``mmcore eval``,
``mmcore plot`` or ``--resume`` reads it — a file holding any other object is refused, naming it.
Checkpoints written before this rule kept numpy's RNG state as an array: numpy's array
reconstruction (and nothing else) is allowed so that they still load.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

import torch

from ..errors import CheckpointError


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
