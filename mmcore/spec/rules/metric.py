"""The task: the head and ``train.select_metric`` against what the data's labels are."""

from __future__ import annotations

from ...errors import SpecIssue
from ...metrics import select_metric_problem, task_metrics
from .context import Context


def _task(ctx: Context) -> str | None:
    """The task of the data's labels, when the data declares it."""
    data = ctx.resolved.parts.get("data")
    return data.params.declared_task() if data is not None else None


def select_metric(ctx: Context) -> list[SpecIssue]:
    """``train.select_metric`` is a metric mmcore computes, and one computed for the data's task."""
    task = _task(ctx)
    problem = select_metric_problem(ctx.spec.train.select_metric, task_metrics(task) if task else None,
                                    what=task or "", why="the data's task")
    return [ctx.issue(("train", "select_metric"), *problem)] if problem else []


def head_task(ctx: Context) -> list[SpecIssue]:
    """The head predicts the data's task."""
    task, head = _task(ctx), ctx.resolved.parts.get("head")
    want = type(head.params).head_task if head is not None else None
    if task is None or want is None or want == task:
        return []
    data = ctx.resolved.parts["data"]
    other = "classification_mlp" if task == "classification" else "regression_mlp"
    hint = f"use head: {{name: {other}}}, or give the data {want} labels (its task param)"
    return [ctx.issue(("head", "name"), f"{head.entry.name!r} predicts {want} but the data ({data.entry.name}) has "
                      f"{task} labels", (hint,))]
