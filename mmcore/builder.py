"""Build a :class:`~mmcore.pipeline.Pipeline` from a validated spec."""

from __future__ import annotations

import os
from dataclasses import replace

from . import capabilities
from .errors import SpecError, SpecIssue
from .pipeline import Pipeline
from .protocols import BuildContext, ModalityInfo
from .spec import ResolvedSpec, load_spec, spec_from_dict
from .spec.models import PipelineSpec


def resolve(spec) -> ResolvedSpec:
    """Accept a path, a dict, or an already resolved spec."""
    if isinstance(spec, ResolvedSpec):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    if isinstance(spec, PipelineSpec):
        return spec_from_dict(spec.model_dump(mode="json"))
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    raise TypeError(f"build() takes a spec path, dict or ResolvedSpec, not {type(spec).__name__}")


def modality_infos(rs: ResolvedSpec, data_info=None) -> dict[str, ModalityInfo]:
    """Modality dims/lengths from the spec, filled from (and checked against) the dataset info."""
    out, issues = {}, []
    for name, ms in rs.spec.modalities.items():
        dim, length = ms.dim, ms.length
        if data_info is not None:
            ddim, dlen = data_info.dims.get(name), data_info.lengths.get(name)
            for field, mine, theirs in (("dim", dim, ddim), ("length", length, dlen)):
                if mine is not None and theirs is not None and mine != theirs and not (field == "length" and mine > theirs):
                    where = rs.where(("modalities", name, field))
                    issues.append(SpecIssue(where, f"modalities.{name}.{field}",
                                            f"the spec says {mine} but the data ({data_info.name}) has {theirs}",
                                            (f"set modalities.{name}.{field}: {theirs}, or omit it to take it from the data",)))
            dim, length = dim or ddim, length or dlen
        if dim is None:
            where = rs.where(("modalities", name))
            issues.append(SpecIssue(where, f"modalities.{name}.dim", "unknown feature size",
                                    ("give modalities.<name>.dim, or build with the dataset so it is read from the data",)))
            continue
        out[name] = ModalityInfo(name, dim, length or 0, ms.resolved_mask_with(name))
    if issues:
        raise SpecError(issues)
    return out


def build(spec, data_info=None) -> Pipeline:
    """Build the pipeline ``nn.Module`` for a spec; ``data_info`` fills dims and the head's outputs.

    Without ``data_info``, the spec's dataset is loaded to read them if the spec omits any dim.
    """
    rs = resolve(spec)
    if data_info is None and any(m.dim is None for m in rs.spec.modalities.values()):
        from .data.load import load_dataset

        data_info = load_dataset(rs).info
    mods = modality_infos(rs, data_info)
    task = data_info.task if data_info is not None else "regression"
    ctx = BuildContext(modalities=mods, d_model=rs.spec.model.d_model, dropout=rs.spec.model.dropout, task=task,
                       num_outputs=(data_info.num_classes if task == "classification" else 1) if data_info else 1)

    def make(key: str, c: BuildContext):
        part = rs.parts[key]
        cls = part.entry.load()
        try:
            return cls(part.params, c)
        except (ValueError, TypeError, KeyError, AssertionError) as exc:
            # a component refusing its configuration (or a plugin class that cannot be built): one positioned error
            where = rs.where(part.path + ("params",))
            text = " ".join(str(exc).split())
            raise SpecError([SpecIssue(where, ".".join(map(str, part.path)),
                                       f"{part.entry.kind} {part.entry.name!r} ({part.entry.provided_by}) could not "
                                       f"be built: {type(exc).__name__}: {text}",
                                       ("check its params against its docs; if they are right, report it to the "
                                        "component's authors (mmcore --debug shows the traceback)",))]) from exc

    encoders = {m: make(f"encoders.{m}", replace(ctx, modality=m, in_dim=info.dim)) for m, info in mods.items()}
    imputer = make("imputer", ctx) if "imputer" in rs.parts else None
    aligner = make("aligner", ctx)
    streams = capabilities.output_streams(aligner, list(mods))
    fuse_ctx = replace(ctx, modalities={s: mods.get(s, ModalityInfo(s, ctx.d_model, 0)) for s in streams})
    fuser = make("fuser", fuse_ctx)
    head = make("head", replace(ctx, in_dim=fuser.out_dim))
    losses = {k.split(".", 1)[1]: make(k, ctx) for k in rs.parts if k.startswith("losses.")}
    unk = {m: info.dim for m, info in mods.items() if info.mask_with == "unk"}
    return Pipeline(encoders, aligner, fuser, head, imputer=imputer, losses=losses,
                    loss_weights=rs.loss_weights(), unk_dims=unk)
