"""What validation produces: the skeleton, each component resolved with its validated params."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from ..errors import Position
from ..registry import Entry, Registry
from .models import PipelineSpec
from .yaml_source import Path_, Source


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

    def where(self, path: Path_, *, key: bool = False) -> Position:
        """The position of ``path`` in the spec's source (just ``spec`` for a spec without one)."""
        return self.source.where(path, key=key) if self.source is not None else Position("spec")

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
