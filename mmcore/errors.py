"""User-facing error types, and the one shape of their messages.

Every error a user can cause by what they wrote (a spec, a data file, an installed plugin)
subclasses :class:`MmcoreUserError`. The CLI prints its message and exits with code 2, no
traceback (``--debug`` shows it). Anything else escaping is a bug and keeps its traceback.

The message shape is "where: error: what" then indented hints (:func:`format_error`), e.g.::

    examples/alignmamba.yaml:12:11: error: aligner.name: unknown aligner 'relaxd_ot'
      did you mean 'relaxed_ot'? (mmcore-plugin-ot 0.1.0)
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import Iterable


def format_error(where: object, message: str, hints: Iterable[str] = (), path: str = "") -> str:
    """``where: error: [path: ]message``, then each hint on its own line indented by two spaces."""
    head = f"{where}: error: {path + ': ' if path else ''}{message}"
    return "\n".join([head, *("  " + h for h in hints)])


def did_you_mean(word: str, choices: Iterable[str]) -> tuple[str, ...]:
    """``("did you mean 'x'?",)`` for the closest of ``choices``, or ``()`` when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return (f"did you mean {close[0]!r}?",) if close else ()


class MmcoreUserError(Exception):
    """Base class of errors caused by user input; the CLI shows them without a traceback."""

    @classmethod
    def at(cls, where: object, message: str, hints: Iterable[str] = ()):
        """The error whose message is :func:`format_error` ``(where, message, hints)``."""
        return cls(format_error(where, message, hints))


@functools.total_ordering
@dataclass(frozen=True)
class Position:
    """Where a problem is: a file (or another origin, e.g. ``command line (--set k=v)``) and,
    when known, a 1-based line and column (0 = unknown).

    ``str()`` gives ``file:line:col`` (just ``file`` without a line). Positions order by line,
    then column, numerically; positions without a line come last.
    """

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file

    def sort_key(self) -> tuple[bool, int, int, str]:
        return (not self.line, self.line, self.col, self.file)

    def __lt__(self, other: Position) -> bool:
        return self.sort_key() < other.sort_key()


class SpecError(MmcoreUserError):
    """A pipeline spec is malformed or inconsistent; holds every problem found at once."""

    def __init__(self, issues: list["SpecIssue"] | str):
        if isinstance(issues, str):
            issues = [SpecIssue(where="spec", path="", message=issues)]
        self.issues = issues
        super().__init__("\n".join(i.format() for i in issues))


class SpecIssue:
    """One problem in a spec: its :class:`Position`, the field path, the message, hints.

    ``where`` may be given as a :class:`Position` or as text (an origin without a line, e.g.
    ``"command line"``); the attribute :attr:`where` reads back the text.
    """

    __slots__ = ("position", "path", "message", "hints")

    def __init__(self, where: Position | str, path: str, message: str, hints: Iterable[str] = ()):
        self.position = where if isinstance(where, Position) else Position(str(where))
        self.path, self.message, self.hints = path, message, tuple(hints)

    @property
    def where(self) -> str:
        return str(self.position)

    def format(self) -> str:
        return format_error(self.position, self.message, self.hints, self.path)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"SpecIssue({self.format()!r})"


class UnknownComponentError(MmcoreUserError):
    """A component name is not in the registry (raised by programmatic lookups)."""


class DataError(MmcoreUserError):
    """A data file is missing, corrupt, mis-shaped, or holds NaN/inf where not allowed."""


class PluginError(MmcoreUserError):
    """A plugin misbehaved in a way that cannot be skipped (e.g. a duplicate component name)."""


class CheckpointError(MmcoreUserError):
    """A checkpoint or run directory cannot be used (missing, corrupt, or from another spec)."""


class TrainingDivergedError(MmcoreUserError):
    """The loss became NaN/inf; the message names the loss terms and the knobs to turn.

    Checkpoints written before the divergence are kept (``last.pt`` / ``best.pt``)."""


class NumericalRangeError(MmcoreUserError, ValueError):
    """An input lies outside the range a computation supports (e.g. features so large that a
    component's statistics overflow); the message names the range and what to change."""
