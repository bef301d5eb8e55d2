"""Two-step spec validation with errors that point at the YAML (rendercv-style).

1. The skeleton (:class:`PipelineSpec`): structure, types, unknown keys.
2. Each component: its name is looked up in the registry of its kind (did-you-mean, the plugin
   that provides it), then its ``params`` validated by the params model it registered.
3. Cross-checks: encoders cover the modalities, modality-valued params name declared ones,
   loss names are registered losses or aux losses of a component in the spec.

All problems are reported at once, sorted by line, as :class:`~mmcore.errors.SpecError`.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import SpecError, SpecIssue
from ..registry import KNOWN_PROVIDERS, Entry, Registry, get_registry, install_hint
from .models import PipelineSpec
from .yaml_source import Source, apply_overrides, load_yaml

_INTERNAL_LOC = {"function-after", "function-before", "function-wrap", "tagged-union", "model-fields"}


@dataclass
class Part:
    """A component resolved from the spec: where it is, its registry entry, its validated params."""

    path: tuple
    kind: str
    entry: Entry
    params: BaseModel


@dataclass
class ResolvedSpec:
    """A validated spec: the skeleton, the resolved components and the source for error messages."""

    spec: PipelineSpec
    parts: dict[str, Part] = field(default_factory=dict)  # "aligner", "encoders.text", "losses.mmd", ...
    source: Source | None = None
    registry: Registry | None = None

    def part(self, key: str) -> Part | None:
        return self.parts.get(key)

    def encoder_for(self, modality: str) -> Part:
        return self.parts[f"encoders.{modality}"]

    def loss_weights(self) -> dict[str, float]:
        """Weight per aux-loss name: the spec's, else the default the component declared."""
        weights: dict[str, float] = {}
        for part in self.parts.values():
            weights.update(part.entry.aux_losses)
        weights.update({name: ls.weight for name, ls in self.spec.losses.items()})
        return weights

    def to_data(self) -> dict:
        """The spec as plain data with every component's params filled with defaults (for saving)."""
        data = self.spec.model_dump(mode="json")
        for key, part in self.parts.items():
            target = data
            *head, last = part.path
            for p in head:
                target = target[p]
            target[last]["params"] = part.params.model_dump(mode="json")
        return data


#: metrics each task's evaluation produces (regression: the union of the MOSI/SIMS/plain sets)
_TASK_METRICS = {
    "regression": {"loss", "mae", "mse", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7",
                   "acc2", "acc3", "f1"},
    "classification": {"loss", "acc", "weighted_acc", "f1_weighted"},
}


from ..metrics import METRIC_MODES as METRIC_MODES_ALL  # noqa: E402  (torch-free)


def _task_issues(spec, resolved: ResolvedSpec, src) -> list[SpecIssue]:
    """The head and train.select_metric against the task of the data's labels, when the data knows it."""
    data, head = resolved.parts.get("data"), resolved.parts.get("head")
    task = data.params.declared_task() if data is not None else None
    if task is None:
        return []
    issues = []
    want = type(head.params).head_task if head is not None else None
    if want is not None and want != task:
        where = src.where(("head", "name"))
        other = "classification_mlp" if task == "classification" else "regression_mlp"
        issues.append(SpecIssue(where, "head.name", f"{head.entry.name!r} predicts {want} but the data "
                                f"({data.entry.name}) has {task} labels",
                                (f"use head: {{name: {other}}}, or give the data {want} labels (its task param)",),
                                _line(where)))
    metric = spec.train.select_metric
    if metric in METRIC_MODES_ALL and metric not in _TASK_METRICS[task]:
        where = src.where(("train", "select_metric"))
        issues.append(SpecIssue(where, "train.select_metric", f"{metric!r} is not computed for {task} "
                                f"(the data's task)", (f"{task} metrics: {', '.join(sorted(_TASK_METRICS[task]))}",),
                                _line(where)))
    return issues


def _path_str(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class whose fields apply at ``loc`` (to suggest keys), if any."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        if f is None:
            return None
        model = _unwrap_model(f.annotation)
    return model


def _unwrap_model(ann) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _issues_from_pydantic(exc: ValidationError, src: Source, prefix: tuple, model: type[BaseModel]) -> list[SpecIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p in _INTERNAL_LOC or "[" in p)))
        path = prefix + loc
        etype, hints = err["type"], []
        if etype == "missing":  # point at the parent mapping, which is where the key should go
            message, where, path = f"required key {loc[-1]!r} is missing", src.where(path[:-1], key=True), path[:-1]
        elif etype == "extra_forbidden":
            allowed = sorted((_model_at(model, loc[:-1]) or BaseModel).model_fields)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            message, where = "unknown key", src.where(path, key=True)
            hints.append(f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed) or '(none)'}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = err.get("input")
            message = msg if isinstance(shown, (dict, list)) else f"{msg} (got {shown!r})"
            where = src.where(path)
        issues.append(SpecIssue(where, _path_str(path), message, tuple(hints), _line(where)))
    return issues


def _line(where: str) -> float:
    """Sort key of a ``file:line:col`` location: line + col/1e4 (0 when there is no position)."""
    parts = where.rsplit(":", 2)
    try:
        return int(parts[-2]) + int(parts[-1]) / 1e4
    except (ValueError, IndexError):
        return 0


def _component_paths(data: dict) -> list[tuple[tuple, str]]:
    """(path, kind) of every component in raw spec data (works before the skeleton validates)."""
    encoders = data.get("encoders")
    paths: list[tuple[tuple, str]] = [(("encoders", k), "encoder") for k in encoders] if isinstance(encoders, dict) else []
    if data.get("imputer") is not None:
        paths.append((("imputer",), "imputer"))
    paths += [((k,), kind) for k, kind in (("aligner", "aligner"), ("fuser", "fuser"), ("head", "head"), ("data", "dataset"))]
    return paths


_DEFAULT_COMPONENTS = {"aligner": "identity", "data": "synthetic"}


def _raw_component(data: dict, path: tuple) -> dict | None:
    obj: Any = data
    for p in path:
        obj = obj.get(p) if isinstance(obj, dict) else None
    if obj is None and len(path) == 1 and path[0] in _DEFAULT_COMPONENTS:
        return {"name": _DEFAULT_COMPONENTS[path[0]]}
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(obj.get("params", {}), dict):
        return None  # the skeleton reports it
    return obj


def _registry_for(data: dict) -> Registry:
    plugins = data.get("plugins")
    ok = isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)
    return get_registry(only=plugins if ok else None)


def validate_data(src: Source, registry: Registry | None = None) -> ResolvedSpec:
    """Validate parsed spec data; raise :class:`SpecError` listing every problem with its position."""
    data, issues = src.data, []
    spec = None
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        issues += _issues_from_pydantic(e, src, (), PipelineSpec)
    registry = registry or _registry_for(data)
    resolved = ResolvedSpec(spec=spec, source=src, registry=registry)
    mods = list(data["modalities"]) if isinstance(data.get("modalities"), dict) else []
    found = []  # every component whose name resolved, even if its params are invalid (its aux losses exist)

    for path, kind in _component_paths(data):
        comp = _raw_component(data, path)
        if comp is None:
            continue
        name = comp["name"]
        entry = registry.find(kind, name)
        if entry is None or (kind, name) in registry.conflicts:
            where = src.where(path + ("name",))
            hints = tuple(registry.suggest(kind, name))
            issues.append(SpecIssue(where, _path_str(path + ("name",)), f"unknown {kind} {name!r}", hints, _line(where)))
            continue
        found.append(entry)
        try:
            params = entry.params.model_validate(comp.get("params") or {})
        except ValidationError as e:
            issues += _issues_from_pydantic(e, src, path + ("params",), entry.params)
            continue
        issues += _check_modality_fields(params, src, path + ("params",), mods)
        key = ".".join(str(p) for p in path)
        resolved.parts[key] = Part(path, kind, entry, params)
    if spec is None:
        raise SpecError(_sorted(issues))

    # the selection metric must be a metric mmcore computes (the trainer checks it fits the dataset)
    from ..metrics import METRIC_MODES

    if spec.train.select_metric not in METRIC_MODES:
        path = ("train", "select_metric")
        where = src.where(path)
        close = difflib.get_close_matches(spec.train.select_metric, list(METRIC_MODES), n=1)
        hints = ((f"did you mean {close[0]!r}?",) if close else ()) + (f"metrics: {', '.join(METRIC_MODES)}",)
        issues.append(SpecIssue(where, "train.select_metric", f"unknown metric {spec.train.select_metric!r}", hints,
                                _line(where)))

    issues += _task_issues(spec, resolved, src)

    # component-specific cross-checks against the whole spec
    for part in resolved.parts.values():
        for fld, message in part.params.check_spec(spec):
            path = part.path + ("params", fld)
            where = src.where(path)
            issues.append(SpecIssue(where, _path_str(path), message, (), _line(where)))

    # encoders: keys are declared modalities or 'default'; every modality ends up with one
    for key in spec.encoders:
        if key != "default" and key not in spec.modalities:
            where = src.where(("encoders", key), key=True)
            close = difflib.get_close_matches(key, mods + ["default"], n=1)
            hint = (f"did you mean {close[0]!r}?",) if close else (f"declared modalities: {', '.join(mods)}",)
            issues.append(SpecIssue(where, f"encoders.{key}", "not a declared modality (nor 'default')", hint, _line(where)))
    for m in mods:
        if m not in spec.encoders and "default" not in spec.encoders:
            where = src.where(("encoders",), key=True)
            issues.append(SpecIssue(where, "encoders", f"no encoder for modality {m!r}",
                                    (f"add 'encoders: {{{m}: {{name: linear}}}}' or a 'default' entry",), _line(where)))
        elif m not in spec.encoders and "encoders.default" in resolved.parts:
            d = resolved.parts["encoders.default"]
            resolved.parts[f"encoders.{m}"] = Part(("encoders", "default"), "encoder", d.entry, d.params)
    resolved.parts.pop("encoders.default", None)

    # missing-modality ops name declared modalities
    for section in ("train", "eval"):
        for i, op in enumerate(getattr(spec.missing, section) or []):
            names = [(("modalities", j), n) for j, n in enumerate(op.modalities or [])]
            if op.modality:
                names.append((("modality",), op.modality))
            issues += [_not_a_modality(src, ("missing", section, i) + sub, n, mods) for sub, n in names if n not in mods]

    # losses: registered loss components, or aux losses declared by a component of this spec
    declared = {name for entry in found for name in entry.aux_losses}
    for name, ls in spec.losses.items():
        path = ("losses", name)
        entry = registry.find("loss", name)
        if entry is not None:
            try:
                params = entry.params.model_validate(ls.params)
            except ValidationError as e:
                issues += _issues_from_pydantic(e, src, path + ("params",), entry.params)
                continue
            issues += _check_modality_fields(params, src, path + ("params",), mods)
            resolved.parts[f"losses.{name}"] = Part(path, "loss", entry, params)
        elif name not in declared:
            where = src.where(path, key=True)
            known = sorted(declared | set(registry.names("loss")))
            hints = []
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                hints.append(f"did you mean {close[0]!r}?")
            if ("loss", name) in KNOWN_PROVIDERS:
                dist = KNOWN_PROVIDERS[("loss", name)]
                hints.append(f"hint: loss {name!r} comes from {dist}, which is not installed; run: {install_hint(dist)}")
            hints.append(f"losses available here: {', '.join(known) if known else '(none)'}")
            issues.append(SpecIssue(where, f"losses.{name}", "not a registered loss nor an auxiliary loss of a "
                                    "component in this spec", tuple(hints), _line(where)))
        elif ls.params:
            where = src.where(path + ("params",), key=True)
            issues.append(SpecIssue(where, f"losses.{name}.params", f"{name!r} is returned by a component; set its "
                                    "options in that component's params", (), _line(where)))
    if issues:
        raise SpecError(_sorted(issues))
    return resolved


def _check_modality_fields(params: BaseModel, src: Source, prefix: tuple, mods: list[str]) -> list[SpecIssue]:
    issues = []
    for f in getattr(params, "modality_fields", ()):
        value = getattr(params, f)
        values = value if isinstance(value, (list, tuple)) else [value]
        for j, v in enumerate(values):
            if v is None or v in mods:
                continue
            issues.append(_not_a_modality(src, prefix + ((f, j) if isinstance(value, (list, tuple)) else (f,)), v, mods))
    return issues


def _not_a_modality(src: Source, path: tuple, value, mods: list[str]) -> SpecIssue:
    where = src.where(path)
    close = difflib.get_close_matches(str(value), mods, n=1)
    hints = (f"did you mean {close[0]!r}?",) if close else (f"declared modalities: {', '.join(mods)}",)
    return SpecIssue(where, _path_str(path), f"{value!r} is not a declared modality", hints, _line(where))


def _sorted(issues: list[SpecIssue]) -> list[SpecIssue]:
    seen, out = set(), []
    for i in sorted(issues, key=lambda i: (i.line or 10**9, i.path)):
        key = (i.path, i.message)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def load_spec(path, overrides: list[str] | None = None, registry: Registry | None = None) -> ResolvedSpec:
    """Load a YAML spec file, apply ``--set`` overrides, validate; raise :class:`SpecError`."""
    src = apply_overrides(load_yaml(path), overrides)
    return validate_data(src, registry)


def spec_from_dict(data: dict, name: str = "<dict>", registry: Registry | None = None) -> ResolvedSpec:
    """Validate a spec given as a Python dict (positions then refer to keys only)."""
    import copy

    if not isinstance(data, dict):
        raise SpecError([SpecIssue(name, "", f"the spec must be a mapping, got a {type(data).__name__}")])
    return validate_data(Source(name=name, data=copy.deepcopy(data)), registry)
