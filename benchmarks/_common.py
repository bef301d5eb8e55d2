"""What every benchmark prints and parses alike: the machine line (CPU, cores, torch threads, load
average, clock) and the ``--epochs/--batch-size/--threads`` options of the epoch benchmarks.

Imported as ``from _common import ...``: a script's own folder is first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. ``"1.52 / 1.20 / 0.90"``."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def header(clock: str) -> str:
    """One ``#`` line naming the machine, torch's thread count, the load average and the clock timed."""
    import torch

    return (f"# {time.strftime('%Y-%m-%d %H:%M')}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, torch threads {torch.get_num_threads()}; load average (1/5/15 min) "
            f"{load_average()}; clock: {clock}")


def footer() -> str:
    """The ``#`` line printed at the end: the load average the run left."""
    return f"# load average at end (1/5/15 min): {load_average()}"


def epoch_parser(doc: str, epochs: int) -> argparse.ArgumentParser:
    """An argument parser with ``--epochs`` (default ``epochs``), ``--batch-size`` and ``--threads``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return ap


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given."""
    if threads:
        import torch

        torch.set_num_threads(threads)
