"""Base class of every component's pydantic params model (torch-free)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ComponentParams(BaseModel):
    """Params of a registered component: strict (unknown keys are errors) and immutable.

    Subclasses declare fields with the paper's defaults, constraints and ``description=``.
    ``modality_fields`` lists fields whose value (a string or a list of strings) must name
    modalities declared in the spec; the spec validator checks them with YAML positions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    modality_fields: ClassVar[tuple[str, ...]] = ()
    #: heads: the task they predict ("regression" or "classification"); validate checks it against the data's
    head_task: ClassVar[str | None] = None

    def declared_task(self) -> str | None:
        """Datasets: the task of their labels when known without loading the features, else None.

        ``mmcore validate`` checks the head (``head_task``) and ``train.select_metric`` against it.
        """
        return None

    def check_spec(self, spec) -> list[tuple[str, str]]:
        """Cross-checks against the whole spec (a ``PipelineSpec``), e.g. heads dividing d_model.

        Returns ``(field, message)`` pairs; the validator reports each at that field's position.
        """
        return []


class NoParams(ComponentParams):
    """A component without params."""
