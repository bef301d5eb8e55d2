"""Atomic checkpoints: write to a temporary file in the same directory, fsync, then rename.

A crash or Ctrl-C mid-write leaves the previous checkpoint intact; a corrupt or foreign file
raises :class:`~mmcore.errors.CheckpointError` saying which file and what to do.
"""

from __future__ import annotations

import json
import os
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


def load_checkpoint(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no checkpoint here; start without --resume, or point --out at the run to resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a truncated/foreign file; keep the cause
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e}); the file is corrupt or not "
                              "an mmcore checkpoint — resume from best.pt or start a new run") from e
    if not isinstance(payload, dict) or "model" not in payload or "mmcore_version" not in payload:
        raise CheckpointError(f"{path}: not an mmcore checkpoint (keys: {sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__})")
    return payload
