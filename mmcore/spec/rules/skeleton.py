"""The skeleton: structure, types and unknown keys of the whole spec (:class:`PipelineSpec`)."""

from __future__ import annotations

from pydantic import ValidationError

from ...errors import SpecIssue
from ..models import PipelineSpec
from .context import Context
from .pydantic_errors import pydantic_issues


def skeleton(ctx: Context) -> list[SpecIssue]:
    """Validate the spec's sections; on success ``ctx.spec`` is the :class:`PipelineSpec`."""
    try:
        ctx.resolved.spec = PipelineSpec.model_validate(ctx.data)
    except ValidationError as e:
        return pydantic_issues(e, ctx.src, (), PipelineSpec)
    return []
