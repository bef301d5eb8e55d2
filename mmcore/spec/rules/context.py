"""What every validation rule reads: the source, the registry and what earlier rules resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ...errors import SpecIssue
from ...registry import Entry, Registry
from ..resolved import ResolvedSpec
from ..yaml_source import Path_, Source


def path_str(path: Path_) -> str:
    """``("missing", "train", 0, "modality")`` -> ``missing.train[0].modality``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@dataclass
class Context:
    """The state rules share. ``resolved.spec`` is None until the skeleton validates."""

    src: Source
    registry: Registry
    resolved: ResolvedSpec
    found: list[Entry] = field(default_factory=list)  # every component whose name resolved (its aux losses exist)

    @property
    def data(self):
        return self.src.data

    @property
    def spec(self):
        return self.resolved.spec

    @property
    def mods(self) -> list[str]:
        """The declared modality names (read from the raw data, so known before the skeleton validates)."""
        mods = self.data.get("modalities")
        return list(mods) if isinstance(mods, dict) else []

    def issue(self, path: Path_, message: str, hints: Iterable[str] = (), *, key: bool = False) -> SpecIssue:
        """A problem at ``path`` (at its key if ``key``), named by its dotted path."""
        return SpecIssue(self.src.where(path, key=key), path_str(path), message, hints)
