"""Pipeline specs: pydantic models, positioned YAML loading, validation, JSON Schema (torch-free)."""

from __future__ import annotations

from .models import ComponentSpec as ComponentSpec
from .models import PipelineSpec as PipelineSpec
from .resolved import Part as Part
from .resolved import ResolvedSpec as ResolvedSpec
from .validate import load_spec as load_spec
from .validate import spec_from_dict as spec_from_dict
from .validate import validate_data as validate_data

__all__ = ["ComponentSpec", "PipelineSpec", "Part", "ResolvedSpec", "load_spec", "spec_from_dict", "validate_data"]
