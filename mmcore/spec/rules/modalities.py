"""Modalities: names in params and missing-modality ops are declared; every modality has an encoder."""

from __future__ import annotations

from pydantic import BaseModel

from ...errors import SpecIssue, did_you_mean
from ..models import named_modalities
from ..resolved import Part
from ..yaml_source import Path_
from .context import Context


def not_a_modality(ctx: Context, path: Path_, value) -> SpecIssue:
    """``value`` (at ``path``) is not among the declared modalities."""
    mods = ctx.mods
    hints = did_you_mean(value, mods) or (f"declared modalities: {', '.join(mods)}",)
    return ctx.issue(path, f"{value!r} is not a declared modality", hints)


def modality_field_issues(ctx: Context, params: BaseModel, prefix: Path_) -> list[SpecIssue]:
    """The params' ``modality_fields`` name declared modalities."""
    issues = []
    for f in getattr(params, "modality_fields", ()):
        value = getattr(params, f)
        many = isinstance(value, (list, tuple))
        for j, v in enumerate(value if many else [value]):
            if v is not None and v not in ctx.mods:
                issues.append(not_a_modality(ctx, prefix + ((f, j) if many else (f,)), v))
    return issues


def encoders(ctx: Context) -> list[SpecIssue]:
    """Encoder keys are declared modalities or ``default``; every modality ends up with an encoder.

    Resolves ``encoders.<m>`` for the modalities the ``default`` entry covers.
    """
    issues, spec, mods, parts = [], ctx.spec, ctx.mods, ctx.resolved.parts
    for key in spec.encoders:
        if key != "default" and key not in spec.modalities:
            hints = did_you_mean(key, mods + ["default"]) or (f"declared modalities: {', '.join(mods)}",)
            issues.append(ctx.issue(("encoders", key), "not a declared modality (nor 'default')", hints, key=True))
    for m in mods:
        if m not in spec.encoders and "default" not in spec.encoders:
            issues.append(ctx.issue(("encoders",), f"no encoder for modality {m!r}",
                                    (f"add 'encoders: {{{m}: {{name: linear}}}}' or a 'default' entry",), key=True))
        elif m not in spec.encoders and "encoders.default" in parts:
            d = parts["encoders.default"]
            parts[f"encoders.{m}"] = Part(("encoders", "default"), "encoder", d.entry, d.params)
    parts.pop("encoders.default", None)
    return issues


def missing_ops(ctx: Context) -> list[SpecIssue]:
    """The modalities each missing-modality op names are declared."""
    issues = []
    for section in ("train", "eval"):
        for i, op in enumerate(getattr(ctx.spec.missing, section) or []):
            issues += [not_a_modality(ctx, ("missing", section, i) + sub, name)
                       for sub, name in named_modalities(op) if name not in ctx.mods]
    return issues
