"""What a run reports as it goes: a progress bar per epoch, the per-epoch metric files, TensorBoard.

``metrics.jsonl`` and ``metrics.csv`` are rewritten whole from the checkpointed history after every
epoch, so they always agree with ``last.pt``, a resumed run included.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from .checkpoint import atomic_write_text

log = logging.getLogger("mmcore.train")


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar (batches, rate, ETA) on a terminal; elsewhere (logs, CI) a log line once a minute."""
    if not enabled:
        return None
    import sys

    if not sys.stderr.isatty():
        return LogTicker(total, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


class LogTicker:
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


def _csv(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def write_metrics(run_dir: str, history: list[dict]) -> None:
    """``metrics.jsonl`` and ``metrics.csv`` from the whole history; the last record mirrored to TensorBoard."""
    atomic_write_text(os.path.join(run_dir, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in history))
    cols = list(dict.fromkeys(k for r in history for k in r))
    lines = [",".join(cols)] + [",".join(_csv(r.get(c, "")) for c in cols) for r in history]
    atomic_write_text(os.path.join(run_dir, "metrics.csv"), "\n".join(lines) + "\n")
    _tensorboard(run_dir, history[-1])


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


def close_tensorboard(run_dir: str) -> None:
    """Close the run's TensorBoard writer, if one was opened."""
    w = _tb_writers.pop(run_dir, None)
    if w is not None:
        w.close()
