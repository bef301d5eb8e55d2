"""Instantiate the dataset a spec selects."""

from __future__ import annotations

from ..spec import ResolvedSpec
from .base import MultimodalData


def load_dataset(rs: ResolvedSpec) -> MultimodalData:
    """Build the spec's registered dataset for its modalities and seed."""
    part = rs.parts["data"]
    return part.entry.load()(part.params, modalities=list(rs.spec.modalities), seed=rs.spec.seed)
