"""mmcore: multimodal sequence learning from YAML recipes.

Importing mmcore is cheap: no torch, no plugin loading. Heavy pieces load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._lazy import lazy_package as lazy_package
from .hookspecs import hookimpl as hookimpl
from .registry import get_registry as get_registry
from .registry import lazy as lazy
from .registry import lazy_exports as lazy_exports
from .registry import register as register

__all__ = ["__version__", "hookimpl", "get_registry", "lazy", "lazy_exports", "lazy_package", "register", "build",
           "load_spec"]


def build(spec, **kwargs):
    """Build the pipeline ``nn.Module`` for a spec (a path, a dict or a ``PipelineSpec``)."""
    from .builder import build as _build

    return _build(spec, **kwargs)


def load_spec(path, overrides=None):
    """Load and validate a YAML spec; raises :class:`mmcore.errors.SpecError` with positions."""
    from .spec import load_spec as _load_spec

    return _load_spec(path, overrides=overrides)
