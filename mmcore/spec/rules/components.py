"""Components: each name looked up in the registry of its kind, then its params by its own model."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ...errors import SpecIssue
from ...registry import Entry
from ..resolved import Part
from ..yaml_source import Path_
from .context import Context
from .modalities import modality_field_issues
from .pydantic_errors import pydantic_issues

#: components a spec may omit, and what they default to
_DEFAULT_COMPONENTS = {"aligner": "identity", "data": "synthetic"}


def component_paths(data: dict) -> list[tuple[Path_, str]]:
    """(path, kind) of every component in raw spec data (works before the skeleton validates)."""
    encoders = data.get("encoders")
    paths: list[tuple[Path_, str]] = [(("encoders", k), "encoder") for k in encoders] if isinstance(encoders, dict) else []
    if data.get("imputer") is not None:
        paths.append((("imputer",), "imputer"))
    paths += [((k,), kind) for k, kind in (("aligner", "aligner"), ("fuser", "fuser"), ("head", "head"), ("data", "dataset"))]
    return paths


def raw_component(data: dict, path: Path_) -> dict | None:
    """The ``{name, params}`` mapping at ``path``, its default if omitted, or None when malformed."""
    obj: Any = data
    for p in path:
        obj = obj.get(p) if isinstance(obj, dict) else None
    if obj is None and len(path) == 1 and path[0] in _DEFAULT_COMPONENTS:
        return {"name": _DEFAULT_COMPONENTS[path[0]]}
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(obj.get("params", {}), dict):
        return None  # the skeleton reports it
    return obj


def resolve_params(ctx: Context, path: Path_, kind: str, entry: Entry, raw: dict) -> list[SpecIssue]:
    """Validate ``raw`` params with the entry's model and record the part; the problems found."""
    try:
        params = entry.params.model_validate(raw)
    except ValidationError as e:
        return pydantic_issues(e, ctx.src, path + ("params",), entry.params)
    ctx.resolved.parts[".".join(str(p) for p in path)] = Part(path, kind, entry, params)
    return modality_field_issues(ctx, params, path + ("params",))


def components(ctx: Context) -> list[SpecIssue]:
    """Every component's name is registered for its kind (once), and its params are valid."""
    issues = []
    for path, kind in component_paths(ctx.data):
        comp = raw_component(ctx.data, path)
        if comp is None:
            continue
        name = comp["name"]
        entry = ctx.registry.find(kind, name)
        if entry is None or (kind, name) in ctx.registry.conflicts:
            issues.append(ctx.issue(path + ("name",), f"unknown {kind} {name!r}", ctx.registry.suggest(kind, name)))
            continue
        ctx.found.append(entry)
        issues += resolve_params(ctx, path, kind, entry, comp.get("params") or {})
    return issues


def cross_checks(ctx: Context) -> list[SpecIssue]:
    """Each component's own checks against the whole spec (``params.check_spec``)."""
    return [ctx.issue(part.path + ("params", fld), message)
            for part in list(ctx.resolved.parts.values()) for fld, message in part.params.check_spec(ctx.spec)]
