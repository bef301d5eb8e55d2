r"""Evaluation metrics, computed exactly as the MMSA toolkit computes them (numpy only, torch-free).

This module is the metrics reference the docs quote. Inputs are 1-D arrays (or tensors, or
lists) of predictions :math:`\hat y` and labels :math:`y` of length N; a regression prediction
of shape (N, 1) is flattened. Results are Python floats.

Regression, ``metric_set="mosi"`` (CMU-MOSI / MOSEI, labels in [-3, 3]); MMSA
``MetricsTop.__eval_mosei_regression``:

* ``acc2_has0``, ``f1_has0``: "has-0" binary task, class = :math:`[v \ge 0]` for both
  :math:`y` and :math:`\hat y` (zero labels count as positive); accuracy and weighted F1.
* ``acc2_non0``, ``f1_non0``: "non-0", rows with :math:`y = 0` removed, class = :math:`[v > 0]`
  (a prediction of exactly 0 counts as negative). NaN when every label is 0 (undefined).
* ``acc5`` / ``acc7``: :math:`\frac1N\sum_i [\mathrm{round}(\mathrm{clip}(\hat y_i, \pm c)) =
  \mathrm{round}(\mathrm{clip}(y_i, \pm c))]` with c = 2 / 3. ``round`` is numpy's: ties go to
  the even integer (0.5 -> 0, 1.5 -> 2, -2.5 -> -2), as in MMSA.
* ``mae`` = :math:`\frac1N\sum_i|\hat y_i - y_i|` on the unclipped values; ``corr``: see below.

Regression, ``metric_set="sims"`` (CH-SIMS, labels in [-1, 1]); MMSA ``__eval_sims_regression``.
Both :math:`\hat y` and :math:`y` are first clipped to [-1, 1] (so ``mae`` and ``corr`` use the
clipped values, as MMSA does), then binned with left-open intervals :math:`(a, b]`:

* ``acc2``: [-1, 0] -> 0, (0, 1] -> 1;  ``f1``: weighted F1 of these two classes.
* ``acc3``: [-1, -0.1], (-0.1, 0.1], (0.1, 1];  ``acc5``: [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1],
  (0.1, 0.7], (0.7, 1]. Thresholds are compared in the input's float dtype, as numpy does in
  MMSA (a float32 label 0.1 is in (-0.1, 0.1]).

Regression, ``metric_set="regression"`` (e.g. ICT-MMMO's 1..5 scores): ``mae``, ``mse`` =
:math:`\frac1N\sum_i(\hat y_i - y_i)^2`, ``corr``.

``corr`` is Pearson's :math:`r = \frac{\sum_i (\hat y_i-\bar{\hat y})(y_i-\bar y)}
{\sqrt{\sum_i(\hat y_i-\bar{\hat y})^2}\sqrt{\sum_i(y_i-\bar y)^2}}` (``np.corrcoef``).
Deviation from MMSA: where it is undefined (N < 2, or constant predictions or labels) it is 0.0,
not NaN, so a collapsed model scores "no correlation" and model selection never sees NaN.

Classification (IEMOCAP style), :func:`classification_metrics`: ``acc`` = fraction of correct
predictions; ``weighted_acc`` = mean over classes present in the labels of the per-class recall
:math:`\frac1{|C|}\sum_c \frac{TP_c}{TP_c+FN_c}` (for two classes this is MulT's
``weighted_accuracy`` :math:`(TP\cdot N/P + TN)/(2N)`); ``f1_weighted`` = weighted F1.

Weighted F1 (scikit-learn ``f1_score(average="weighted")``, reimplemented to avoid the
dependency): over the classes present in :math:`y` or :math:`\hat y`,
:math:`F_1 = \sum_c \frac{n_c}{N} \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}`, :math:`n_c` the number
of labels of class c (a class only predicted has weight 0; a 0/0 per-class F1 is 0).

Reference: MMSA toolkit (thuiar/MMSA), ``src/MMSA/utils/metricsTop.py``; Tsai et al. 2019,
MulT (ACL), ``eval_iemocap``; Zadeh et al. 2016, CMU-MOSI.
"""

from __future__ import annotations

from typing import Any, Collection

import numpy as np

from .errors import did_you_mean

__all__ = ["METRIC_MODES", "REGRESSION_SETS", "TASK_METRIC_SETS", "classification_metrics", "compute_metrics",
           "metric_names", "pearson_corr", "regression_metrics", "select_metric_problem", "task_metrics", "weighted_f1"]

#: Model-selection direction of every metric name produced here (plus the trainer's ``loss``).
METRIC_MODES: dict[str, str] = {
    "loss": "min", "mae": "min", "mse": "min", "corr": "max",
    "acc2_has0": "max", "f1_has0": "max", "acc2_non0": "max", "f1_non0": "max", "acc5": "max", "acc7": "max",
    "acc2": "max", "acc3": "max", "f1": "max",
    "acc": "max", "weighted_acc": "max", "f1_weighted": "max",
}

REGRESSION_SETS = ("mosi", "sims", "regression")

_SIMS_BINS = {  # interior edges of MMSA's (a, b] bins on [-1, 1]
    "acc2": (0.0,),
    "acc3": (-0.1, 0.1),
    "acc5": (-0.7, -0.1, 0.1, 0.7),
}


def _as_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().float().cpu().numpy() if x.is_floating_point() and x.dtype.itemsize < 4 else x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,) or (N, 1); got shape {a.shape}")
    return a


def _float_pair(pred: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p, y = _as_array(pred, "pred"), _as_array(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"pred and labels must have the same length; got pred {p.shape} and labels {y.shape}")
    if len(y) == 0:
        raise ValueError("metrics need at least one sample; got 0")
    p = p if np.issubdtype(p.dtype, np.floating) else p.astype(np.float64)
    y = y if np.issubdtype(y.dtype, np.floating) else y.astype(np.float64)
    return p, y


def weighted_f1(y_true: Any, y_pred: Any) -> float:
    """Support-weighted mean of per-class F1, as ``sklearn.metrics.f1_score(average="weighted")``."""
    t, p = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"weighted_f1 needs two non-empty arrays of equal length; got {t.shape} and {p.shape}")
    total = 0.0
    for c in np.union1d(t, p):
        tp = float(np.sum((t == c) & (p == c)))
        fp = float(np.sum((t != c) & (p == c)))
        fn = float(np.sum((t == c) & (p != c)))
        denom = 2 * tp + fp + fn
        total += (2 * tp / denom if denom > 0 else 0.0) * float(np.sum(t == c))
    return total / t.size


def pearson_corr(pred: Any, labels: Any) -> float:
    """Pearson correlation (``np.corrcoef``); 0.0 where undefined (N < 2 or either side constant)."""
    p, y = _float_pair(pred, labels)
    p, y = p.astype(np.float64), y.astype(np.float64)
    if len(p) < 2:
        return 0.0
    dp, dy = p - p.mean(), y - y.mean()
    denom = np.sqrt(np.sum(dp * dp)) * np.sqrt(np.sum(dy * dy))
    if not np.isfinite(denom) or denom == 0.0:
        return 0.0
    return float(np.clip(np.sum(dp * dy) / denom, -1.0, 1.0))


def _acc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b)) if a.size else float("nan")


def _bin(v: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Class index of each value for left-open bins (a, b], edges compared in v's dtype."""
    return np.searchsorted(np.asarray(edges, dtype=v.dtype), v, side="left")


def regression_metrics(pred: Any, labels: Any, metric_set: str = "mosi") -> dict[str, float]:
    """Regression metrics of one set (``mosi``, ``sims`` or ``regression``); see the module docstring.

    Shapes: pred (N,) or (N, 1), labels (N,) -> {name: float}.
    Raises: ValueError for an unknown set or mismatched shapes.
    """
    if metric_set not in REGRESSION_SETS:
        raise ValueError(f"metric_set must be one of {REGRESSION_SETS}; got {metric_set!r}")
    p, y = _float_pair(pred, labels)
    if metric_set == "sims":
        one = np.asarray(1.0, dtype=p.dtype)
        p, y = np.clip(p, -one, one), np.clip(y, -np.asarray(1.0, dtype=y.dtype), np.asarray(1.0, dtype=y.dtype))
        out = {k: _acc(_bin(p, e), _bin(y, e)) for k, e in _SIMS_BINS.items()}
        out["f1"] = weighted_f1(_bin(y, _SIMS_BINS["acc2"]), _bin(p, _SIMS_BINS["acc2"]))
    elif metric_set == "mosi":
        nz = y != 0
        out = {"acc2_has0": _acc(p >= 0, y >= 0), "f1_has0": weighted_f1(y >= 0, p >= 0),
               "acc2_non0": _acc(p[nz] > 0, y[nz] > 0),
               "f1_non0": weighted_f1(y[nz] > 0, p[nz] > 0) if nz.any() else float("nan")}
        for k, c in (("acc5", 2.0), ("acc7", 3.0)):
            out[k] = _acc(np.round(np.clip(p, -c, c)), np.round(np.clip(y, -c, c)))
    else:
        out = {"mse": float(np.mean((p.astype(np.float64) - y.astype(np.float64)) ** 2))}
    out["mae"] = float(np.mean(np.abs(p.astype(np.float64) - y.astype(np.float64))))
    out["corr"] = pearson_corr(p, y)
    return out


def classification_metrics(logits_or_pred: Any, labels: Any) -> dict[str, float]:
    """``acc``, ``weighted_acc`` (mean per-class recall) and ``f1_weighted``; see the module docstring.

    Shapes: logits (N, C) (argmax taken; (N, 1) = one binary logit, class 1 where > 0) or class
    ids (N,), labels (N,) ints -> {name: float}.
    """
    x = logits_or_pred.detach().cpu().numpy() if hasattr(logits_or_pred, "detach") else np.asarray(logits_or_pred)
    y = _as_array(labels, "labels")
    if x.ndim == 2:
        pred = (x[:, 0] > 0).astype(np.int64) if x.shape[1] == 1 else x.argmax(axis=1)
    elif x.ndim == 1:
        if np.issubdtype(x.dtype, np.floating) and not np.all(x == np.round(x)):
            raise ValueError("1-D predictions must be class ids (integers); pass (N, C) logits to take the argmax")
        pred = x.astype(np.int64)
    else:
        raise ValueError(f"logits_or_pred must be (N, C) logits or (N,) class ids; got shape {x.shape}")
    y = y.astype(np.int64)
    if pred.shape != y.shape or y.size == 0:
        raise ValueError(f"predictions and labels must be non-empty with the same length; got {pred.shape} and {y.shape}")
    recalls = [float(np.mean(pred[y == c] == c)) for c in np.unique(y)]
    return {"acc": _acc(pred, y), "weighted_acc": float(np.mean(recalls)), "f1_weighted": weighted_f1(y, pred)}


def compute_metrics(pred: Any, labels: Any, info: Any) -> dict[str, float]:
    """The metrics ``info.metric_set`` calls for (``info`` is a :class:`mmcore.data.base.DatasetInfo`).

    Raises: ValueError for a metric set other than mosi, sims, regression, classification.
    """
    metric_set = info.metric_set
    if metric_set == "classification":
        return classification_metrics(pred, labels)
    if metric_set in REGRESSION_SETS:
        return regression_metrics(pred, labels, metric_set)
    raise ValueError(f"dataset {getattr(info, 'name', '?')!r}: unknown metric_set {metric_set!r}; "
                     f"expected one of {REGRESSION_SETS + ('classification',)}")


#: the metric sets whose metrics a task's evaluation may produce
TASK_METRIC_SETS: dict[str, tuple[str, ...]] = {"regression": REGRESSION_SETS, "classification": ("classification",)}


def metric_names(metric_set: str) -> list[str]:
    """``loss`` and the metrics :func:`compute_metrics` gives for ``metric_set``, in its order.

    Read from the functions themselves (computed on a 4-row probe), so this list cannot drift from them.
    Raises: ValueError for an unknown metric set.
    """
    if metric_set == "classification":
        probe = classification_metrics(np.eye(2), np.array([0, 1]))
    elif metric_set in REGRESSION_SETS:
        probe = regression_metrics(np.array([0.5, -0.5, 1.0, -1.0]), np.array([0.4, -0.6, 1.0, -1.0]), metric_set)
    else:
        raise ValueError(f"unknown metric_set {metric_set!r}; expected one of {REGRESSION_SETS + ('classification',)}")
    return ["loss", *probe]


def task_metrics(task: str) -> set[str]:
    """Every metric some dataset of ``task`` (``regression`` or ``classification``) may produce."""
    return {name for s in TASK_METRIC_SETS[task] for name in metric_names(s)}


def select_metric_problem(metric: str, computed: Collection[str] | None = None, *, what: str = "",
                          why: str = "") -> tuple[str, tuple[str, ...]] | None:
    """The one rule for ``train.select_metric``: (message, hints) when it cannot select models, else None.

    It must be a metric mmcore computes (:data:`METRIC_MODES`) and, when the metrics this run produces
    are known (``computed``: those of ``what``, known because of ``why``), one of them. Spec validation
    calls it with the data's declared task, the trainer with the loaded dataset's metric set.
    """
    if metric not in METRIC_MODES:
        hints = did_you_mean(metric, METRIC_MODES) + (f"metrics: {', '.join(METRIC_MODES)}",)
        return f"unknown metric {metric!r}", hints
    if computed is not None and metric not in computed:
        return f"{metric!r} is not computed for {what} ({why})", (f"{what} metrics: {', '.join(sorted(computed))}",)
    return None
