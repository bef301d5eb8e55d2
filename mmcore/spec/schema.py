"""JSON Schema of the spec built from the live registry (built-ins and installed plugins).

Each component field becomes a union tagged by ``name`` whose ``params`` is that component's own
params schema, so an editor with yaml-language-server completes and checks params too::

    # yaml-language-server: $schema=mmcore-schema.json
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, Field, ValidationError, create_model

from ..registry import Registry, get_registry
from .models import LossSpec, PipelineSpec, StrictModel

_COMPONENT_FIELDS = {"aligner": "aligner", "fuser": "fuser", "head": "head", "imputer": "imputer", "data": "dataset"}


def _camel(s: str) -> str:
    return "".join(w.capitalize() for w in s.split("_"))


def _variant(kind: str, entry) -> type[BaseModel]:
    try:
        entry.params()
        params_field = (entry.params, Field(default_factory=entry.params, description=entry.description))
    except ValidationError:  # params with required fields (e.g. a data path) stay required
        params_field = (entry.params, Field(description=entry.description))
    return create_model(f"{_camel(kind)}_{entry.name}", __base__=StrictModel,
                        name=(Literal[entry.name], Field(description=entry.description)), params=params_field)


def _union(registry: Registry, kind: str):
    variants = [_variant(kind, e) for e in registry.entries(kind)]
    if not variants:
        return Any
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="name")]


def spec_schema(registry: Registry | None = None) -> dict:
    """The JSON Schema (draft 2020-12) of a pipeline spec for this registry."""
    registry = registry or get_registry()
    fields: dict[str, Any] = {}
    for name, f in PipelineSpec.model_fields.items():
        fields[name] = (f.annotation, f)
    for field, kind in _COMPONENT_FIELDS.items():
        f = PipelineSpec.model_fields[field]
        ann = _union(registry, kind)
        fields[field] = (Optional[ann] if field == "imputer" else ann,
                         Field(default=None, description=f.description) if field == "imputer"
                         else (Field(description=f.description) if f.is_required() else Field(default=None, description=f.description)))
    fields["encoders"] = (dict[str, _union(registry, "encoder")], PipelineSpec.model_fields["encoders"])
    loss_variants = {e.name: create_model(f"Loss_{e.name}", __base__=LossSpec, params=(e.params, Field(default_factory=dict)))
                     for e in registry.entries("loss")}
    fields["losses"] = (dict[str, LossSpec], PipelineSpec.model_fields["losses"])
    model = create_model("PipelineSpecSchema", __base__=StrictModel, __doc__=PipelineSpec.__doc__, **fields)
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mmcore pipeline spec"
    if loss_variants:  # known loss names get their params schema; other names (component aux losses) stay generic
        defs = schema.setdefault("$defs", {})
        props = {}
        for name, m in loss_variants.items():
            sub = m.model_json_schema(ref_template="#/$defs/{model}")
            defs.update(sub.pop("$defs", {}))
            defs[m.__name__] = sub
            props[name] = {"$ref": f"#/$defs/{m.__name__}"}
        schema["properties"]["losses"]["properties"] = props
    return schema
