"""Spec validation rules, one concern per module; each is a function ``(ctx) -> list[SpecIssue]``.

:func:`mmcore.spec.validate.validate_data` runs :data:`RAW_RULES` (they work on the raw data, so a
broken skeleton still gets its component names and params checked), stops if the skeleton failed,
then runs :data:`RULES` on the validated :class:`~mmcore.spec.models.PipelineSpec`, in order.
"""

from __future__ import annotations

from .components import components, cross_checks
from .context import Context as Context
from .losses import losses
from .metric import head_task, select_metric
from .modalities import encoders, missing_ops
from .skeleton import skeleton

RAW_RULES = (skeleton, components)
RULES = (select_metric, head_task, cross_checks, encoders, missing_ops, losses)
