"""``mmcore plot curves``: training and validation curves from a run's ``metrics.jsonl``.

Left panel: every ``train_*`` loss term and the validation task loss per epoch. Right panel: a
validation metric (the run's ``select_metric``, or ``mae``/``acc`` when it selects on the loss).
The selected (best) epoch is marked; phase changes (e.g. a warm-up) are drawn as dotted lines.
"""

from __future__ import annotations

import json
import os

from ..errors import MmcoreUserError
from ._mpl import new_figure, save


def read_history(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        raise MmcoreUserError.at(run_dir, "no metrics.jsonl (not a run directory, or no epoch has finished)",
                                 ("hint: pass a run directory, or a sweep cell (OUT/cells/<variant>/seed<k>)",))
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        raise MmcoreUserError.at(path, "empty; no epoch has finished yet")
    return rows


def _select_metric(run_dir: str) -> str | None:
    path = os.path.join(run_dir, "results.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f).get("select_metric")
    return None


def plot_curves(run_dir: str, output: str | None = None, metric: str | None = None) -> str:
    """Draw the curves of a run; returns the PNG path.

    Raises: MmcoreUserError without metrics.jsonl, or for a ``metric`` the run never logged.
    """
    from ..sweep.summary import default_metric

    rows = read_history(run_dir)
    epochs = [r["epoch"] for r in rows]
    valid = {k[len("valid_"):] for r in rows for k in r if k.startswith("valid_")}
    chosen = metric or _select_metric(run_dir)
    if chosen in (None, "loss"):
        chosen = default_metric(valid) or "loss"
    if chosen not in valid:
        raise MmcoreUserError.at(f"--metric {chosen}", f"{run_dir} logged no valid_{chosen}",
                                 (f"metrics logged: {', '.join(sorted(valid))}",))
    fig = new_figure(11, 4.2)
    ax_loss, ax_metric = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    train_keys = list(dict.fromkeys(k for r in rows for k in r if k.startswith("train_")))
    for k in train_keys:
        pts = [(r["epoch"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
        ax_loss.plot(*zip(*pts), marker=".", label=k[len("train_"):].replace("/", " / "))
    ax_loss.plot(epochs, [r.get("valid_loss") for r in rows], marker="o", color="black", label="valid loss")
    ax_loss.set_title("losses (train terms unweighted)")
    ax_loss.set_xlabel("epoch")
    ax_loss.legend(fontsize="small")
    ax_metric.plot(epochs, [r.get(f"valid_{chosen}") for r in rows], marker="o", color="#c44e52")
    ax_metric.set_title(f"valid {chosen}")
    ax_metric.set_xlabel("epoch")
    best = [r["epoch"] for r in rows if r.get("best")]
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if best:
            ax.axvline(best[-1], color="grey", linestyle="--", linewidth=1)
        for prev, cur in zip(rows, rows[1:]):
            if cur.get("phase") != prev.get("phase"):
                ax.axvline(prev["epoch"] + 0.5, color="grey", linestyle=":", linewidth=1)
                ax.text(prev["epoch"] + 0.5, 1.0, f" {cur.get('phase')}", transform=ax.get_xaxis_transform(),
                        va="top", fontsize="small", color="grey")
    if best:
        ax_metric.set_title(f"valid {chosen} (selected: epoch {best[-1]})")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save(fig, output or os.path.join(run_dir, "curves.png"))
