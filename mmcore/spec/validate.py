"""Spec validation with errors that point at the YAML (rendercv-style).

1. The skeleton (:class:`PipelineSpec`): structure, types, unknown keys.
2. Each component: its name is looked up in the registry of its kind (did-you-mean, the plugin
   that provides it), then its ``params`` validated by the params model it registered.
3. Cross-checks: encoders cover the modalities, modality-valued params name declared ones,
   loss names are registered losses or aux losses of a component in the spec.

Each check is a rule in :mod:`mmcore.spec.rules`. All problems are reported at once, sorted by
position, as :class:`~mmcore.errors.SpecError`.
"""

from __future__ import annotations

import copy

from ..errors import SpecError, SpecIssue
from ..registry import Registry, get_registry
from .resolved import ResolvedSpec
from .rules import RAW_RULES, RULES, Context
from .yaml_source import Source, apply_overrides, load_yaml


def _registry_for(data: dict) -> Registry:
    plugins = data.get("plugins")
    ok = isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)
    return get_registry(only=plugins if ok else None)


def sorted_issues(issues: list[SpecIssue]) -> list[SpecIssue]:
    """By position (line, then column; unpositioned last), then path; repeats dropped."""
    seen, out = set(), []
    for i in sorted(issues, key=lambda i: (i.position.sort_key()[:3], i.path)):
        if (i.path, i.message) not in seen:
            seen.add((i.path, i.message))
            out.append(i)
    return out


def validate_data(src: Source, registry: Registry | None = None) -> ResolvedSpec:
    """Validate parsed spec data; raise :class:`SpecError` listing every problem with its position."""
    registry = registry or _registry_for(src.data)
    ctx = Context(src, registry, ResolvedSpec(spec=None, source=src, registry=registry))
    issues = [i for rule in RAW_RULES for i in rule(ctx)]
    if ctx.spec is None:
        raise SpecError(sorted_issues(issues))
    for rule in RULES:
        issues += rule(ctx)
    if issues:
        raise SpecError(sorted_issues(issues))
    return ctx.resolved


def load_spec(path, overrides: list[str] | None = None, registry: Registry | None = None) -> ResolvedSpec:
    """Load a YAML spec file, apply ``--set`` overrides, validate; raise :class:`SpecError`."""
    src = apply_overrides(load_yaml(path), overrides)
    return validate_data(src, registry)


def spec_from_dict(data: dict, name: str = "<dict>", registry: Registry | None = None) -> ResolvedSpec:
    """Validate a spec given as a Python dict (positions then refer to keys only)."""
    if not isinstance(data, dict):
        raise SpecError([SpecIssue(name, "", f"the spec must be a mapping, got a {type(data).__name__}")])
    return validate_data(Source(name=name, data=copy.deepcopy(data)), registry)
