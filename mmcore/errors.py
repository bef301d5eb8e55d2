"""User-facing error types.

Every error a user can cause by what they wrote (a spec, a data file, an installed plugin)
subclasses :class:`MmcoreUserError`. The CLI prints its message and exits with code 2, no
traceback (``--debug`` shows it). Anything else escaping is a bug and keeps its traceback.

The message shape is "where: what" then indented hints, e.g.::

    examples/alignmamba.yaml:12:11: error: aligner.name: unknown aligner 'relaxd_ot'
      did you mean 'relaxed_ot'? (mmcore-plugin-ot 0.1.0)
"""

from __future__ import annotations


class MmcoreUserError(Exception):
    """Base class of errors caused by user input; the CLI shows them without a traceback."""


class SpecError(MmcoreUserError):
    """A pipeline spec is malformed or inconsistent; holds every problem found at once."""

    def __init__(self, issues: list["SpecIssue"] | str):
        if isinstance(issues, str):
            issues = [SpecIssue(where="spec", path="", message=issues)]
        self.issues = issues
        super().__init__("\n".join(i.format() for i in issues))


class SpecIssue:
    """One problem in a spec: where (file:line:col), the field path, the message, hints."""

    __slots__ = ("where", "path", "message", "hints", "line")

    def __init__(self, where: str, path: str, message: str, hints: tuple[str, ...] = (), line: float = 0):
        self.where, self.path, self.message, self.hints, self.line = where, path, message, tuple(hints), line

    def format(self) -> str:
        head = f"{self.where}: error: {self.path + ': ' if self.path else ''}{self.message}"
        return "\n".join([head, *("  " + h for h in self.hints)])

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
