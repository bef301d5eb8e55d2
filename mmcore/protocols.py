"""The five component protocols and their outputs.

Every component is an ``nn.Module`` built as ``Component(params, ctx)`` where ``params`` is
its validated pydantic params model and ``ctx`` a :class:`BuildContext`. Auxiliary losses are
returned as ``{name: scalar tensor}``; the trainer weights them by the spec's ``losses`` (or
the default weight the component declared at registration) and adds them to the task loss.

Shapes: ``seqs[m]`` (B, T_m, d) with d = ``ctx.d_model``; ``valid[m]`` (B, T_m) bool prefix masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor

    from .batch import Batch


@dataclass(frozen=True)
class ModalityInfo:
    """A declared modality: feature dim, max sequence length, and how masked tokens are filled."""

    name: str
    dim: int
    length: int
    mask_with: str = "zero"  # "zero" or "unk" (a learned unknown-token vector, used for text)


@dataclass(frozen=True)
class BuildContext:
    """What a component may know about the pipeline it is built into.

    ``in_dim``: input feature size (raw ``dim`` for an encoder, the fuser's ``out_dim`` for a head).
    ``modality``: the modality an encoder is built for (None otherwise).
    ``num_outputs``: 1 for regression, the number of classes for classification (heads).
    """

    modalities: dict[str, ModalityInfo]
    d_model: int
    dropout: float = 0.0
    modality: str | None = None
    in_dim: int | None = None
    num_outputs: int = 1
    task: str = "regression"
    extra: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.modalities)


class AlignerOutput(NamedTuple):
    seqs: dict[str, "Tensor"]  # m -> (B, T'_m, d), possibly onto another time axis
    valid: dict[str, "Tensor"]  # m -> (B, T'_m) bool
    aux: dict[str, "Tensor"]  # loss name -> scalar


class FuserOutput(NamedTuple):
    rep: "Tensor"  # (B, out_dim)
    aux: dict[str, "Tensor"]


class ImputerOutput(NamedTuple):
    seqs: dict[str, "Tensor"]  # m -> (B, T_m, d) with missing instances / masked tokens filled in
    aux: dict[str, "Tensor"]


@runtime_checkable
class Encoder(Protocol):
    """One modality's raw sequence -> (B, T, d_model); must ignore padded positions."""

    def forward(self, x: "Tensor", valid: "Tensor") -> "Tensor": ...


@runtime_checkable
class Aligner(Protocol):
    """Encoded sequences -> aligned sequences (+ aux losses).

    An aligner with the class attribute ``accepts_missing = True`` is called with the extra keyword
    ``missing={m: (B,) bool}`` (True = modality absent for that row). Every optional capability
    (``accepts_missing``, ``output_streams``, ``anchor``, ``alignment_plans``, ...) is declared in
    :mod:`mmcore.capabilities`."""

    def forward(self, seqs: dict[str, "Tensor"], valid: dict[str, "Tensor"]) -> AlignerOutput: ...


@runtime_checkable
class Fuser(Protocol):
    """Aligned sequences -> one representation per instance; exposes ``out_dim``."""

    out_dim: int

    def forward(self, seqs: dict[str, "Tensor"], valid: dict[str, "Tensor"]) -> FuserOutput: ...


@runtime_checkable
class Imputer(Protocol):
    """Encoded sequences with missing instances / masked tokens -> completed sequences (+ aux)."""

    def forward(self, seqs: dict[str, "Tensor"], batch: "Batch") -> ImputerOutput: ...


@runtime_checkable
class Head(Protocol):
    """Representation -> prediction; ``loss(pred, labels)`` is the task loss."""

    def forward(self, rep: "Tensor") -> "Tensor": ...

    def loss(self, pred: "Tensor", labels: "Tensor") -> "Tensor": ...


@runtime_checkable
class Loss(Protocol):
    """A standalone auxiliary loss computed from the pipeline's intermediate state."""

    def forward(self, state: "PipelineState") -> "Tensor": ...


@dataclass
class PipelineState:
    """Intermediate results of one forward pass, for standalone losses and plots."""

    batch: "Batch"
    encoded: dict[str, "Tensor"]
    imputed: dict[str, "Tensor"]
    aligned: dict[str, "Tensor"]
    aligned_valid: dict[str, "Tensor"]
    rep: "Tensor"
    pred: "Tensor"
