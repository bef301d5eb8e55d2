"""Pydantic validation errors as positioned spec issues (unknown keys get a did-you-mean)."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

from ...errors import SpecIssue, did_you_mean
from ..yaml_source import Path_, Source
from .context import path_str

_INTERNAL_LOC = {"function-after", "function-before", "function-wrap", "tagged-union", "model-fields"}


def model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class whose fields apply at ``loc`` (to suggest keys), if any."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        if f is None:
            return None
        model = unwrap_model(f.annotation)
    return model


def unwrap_model(ann) -> type[BaseModel] | None:
    """The first pydantic model class inside a type annotation (``X | None``, ``list[X]``, ...)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = unwrap_model(arg)
        if found is not None:
            return found
    return None


def pydantic_issues(exc: ValidationError, src: Source, prefix: Path_, model: type[BaseModel]) -> list[SpecIssue]:
    """One issue per pydantic error of validating ``model`` at ``prefix``."""
    issues = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p in _INTERNAL_LOC or "[" in p)))
        path = prefix + loc
        etype, hints = err["type"], ()
        if etype == "missing":  # point at the parent mapping, which is where the key should go
            message, where, path = f"required key {loc[-1]!r} is missing", src.where(path[:-1], key=True), path[:-1]
        elif etype == "extra_forbidden":
            allowed = sorted((model_at(model, loc[:-1]) or BaseModel).model_fields)
            message, where = "unknown key", src.where(path, key=True)
            hints = did_you_mean(loc[-1], allowed) or (f"allowed keys: {', '.join(allowed) or '(none)'}",)
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = err.get("input")
            message = msg if isinstance(shown, (dict, list)) else f"{msg} (got {shown!r})"
            where = src.where(path)
        issues.append(SpecIssue(where, path_str(path), message, hints))
    return issues
