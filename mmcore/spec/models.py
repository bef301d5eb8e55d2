"""The pipeline spec as pydantic models (torch-free).

A spec names registered components only (``name`` + ``params``); it never names Python paths.
The skeleton here checks structure; each component's ``params`` is then validated by the params
model that component registered (see :mod:`mmcore.spec.validate`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ComponentSpec(StrictModel):
    """A registered component: its registry name and its params (validated by its own model)."""

    name: str = Field(min_length=1, description="Registry name, e.g. relaxed_ot (see `mmcore list`).")
    params: dict[str, Any] = Field(default_factory=dict, description="The component's params; see `mmcore schema`.")


class ModalitySpec(StrictModel):
    """A modality the pipeline uses. ``dim``/``length`` are taken from the data when omitted."""

    dim: int | None = Field(None, gt=0, description="Feature size per token; checked against the data if given.")
    length: int | None = Field(None, gt=0, description="Max sequence length; checked against the data if given.")
    mask_with: Literal["zero", "unk"] | None = Field(
        None, description="What replaces masked tokens: zeros, or a learned unknown-token vector "
                          "(default: unk for a modality named 'text', zero otherwise).")

    def resolved_mask_with(self, name: str) -> str:
        return self.mask_with or ("unk" if name == "text" else "zero")


class ModelSpec(StrictModel):
    d_model: int = Field(64, gt=0, le=8192, description="Width shared by encoders, aligner, fuser.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout used by components that have dropout.")


class LossSpec(StrictModel):
    """Weight of an auxiliary loss (a registered loss, or a loss a component returns by this name)."""

    weight: float = Field(ge=0, description="Multiplier in total = task + Σ weight·aux.")
    params: dict[str, Any] = Field(default_factory=dict, description="Params of a registered loss component.")


MISSING_OP_TYPES = ("temporal", "instance", "victim")


def missing_op_problem(type: str, rate: float, modalities: list[str] | None = None,
                       modality: str | None = None) -> str | None:
    """The rules of one missing-modality op, for spec validation and :class:`mmcore.missing.MissingProtocol`
    alike: what is wrong with it, or None."""
    if type not in MISSING_OP_TYPES:
        return f"missing op type must be one of {MISSING_OP_TYPES}; got {type!r}"
    if not 0 <= rate <= 1:
        return f"{type} rate must be in [0, 1]; got {rate}"
    if type == "temporal" and rate >= 1:
        return "temporal masking rate must be < 1 (every token masked leaves nothing to learn from)"
    if type == "victim" and not modality:
        return "a victim op needs 'modality: <name>'"
    if type != "victim" and modality is not None:
        return f"'modality' is only for type victim; use 'modalities: [...]' for {type}"
    if type == "victim" and modalities is not None:
        return "a victim op takes 'modality', not 'modalities'"
    return None


def named_modalities(op) -> list[tuple[tuple, str]]:
    """(path inside the op, name) of each modality a missing op names: its ``modalities``, its ``modality``."""
    names = [(("modalities", j), n) for j, n in enumerate(op.modalities or [])]
    return names + ([(("modality",), op.modality)] if op.modality else [])


class MissingOpSpec(StrictModel):
    """One missing-modality operation (see docs/missing.md).

    temporal: each valid token of the listed modalities is masked with probability ``rate``.
    instance: each listed modality of each row is dropped with probability ``rate``.
    victim: ``modality`` is dropped per row with probability ``rate`` (1.0 = MM-Align setting A).
    """

    type: Literal["temporal", "instance", "victim"]
    rate: float = Field(ge=0, le=1, description="Masking / dropping probability.")
    modalities: list[str] | None = Field(None, description="Modalities affected (default: all). Not for victim.")
    modality: str | None = Field(None, description="The victim modality (victim only).")
    keep_one: bool = Field(True, description="instance: never drop every modality of a row.")

    @model_validator(mode="after")
    def _check(self):
        problem = missing_op_problem(self.type, self.rate, self.modalities, self.modality)
        if problem:
            raise ValueError(problem)
        return self


class MissingSpec(StrictModel):
    """Missing-modality protocol applied in training (per epoch) and evaluation (fixed)."""

    train: list[MissingOpSpec] = Field(default_factory=list, description="Applied to training batches, resampled each epoch.")
    eval: list[MissingOpSpec] | None = Field(None, description="Applied to valid/test; default: same as train.")

    def eval_ops(self) -> list[MissingOpSpec]:
        return self.train if self.eval is None else self.eval


class TrainSpec(StrictModel):
    epochs: int = Field(10, ge=1, description="Maximum training epochs.")
    batch_size: int = Field(32, ge=1, description="Global batch size (split across processes under torchrun).")
    eval_batch_size: int | None = Field(None, ge=1, description="Batch size for evaluation (default: 2·batch_size).")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    scheduler: Literal["none", "cosine", "step"] = Field("none", description="Per-epoch learning-rate schedule.")
    step_size: int = Field(10, ge=1, description="step scheduler: epochs between decays.")
    gamma: float = Field(0.5, gt=0, le=1, description="step scheduler: decay factor.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm (null = off).")
    patience: int | None = Field(None, ge=1, description="Early stopping after this many epochs without improvement.")
    select_metric: str = Field("loss", description="Validation metric for model selection and early stopping "
                                                   "(loss = validation task loss; or mae, corr, acc2_has0, ...).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if available.")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 = autocast to bfloat16.")
    compile: bool = Field(False, description="Wrap the model in torch.compile.")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (default: the thread policy: 1 "
                                    "for a model under 32M parameters, else the cores or a sweep job's share; "
                                    "docs/performance.md).")


class PipelineSpec(StrictModel):
    """A complete pipeline: data, modalities, components, losses, missing protocol, training."""

    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds Python, numpy, torch and the missing-modality "
                                                        "protocol; 0 <= seed < 2^32.")
    plugins: list[str] | None = Field(None, description="Only load these plugin distributions (default: all installed).")
    modalities: dict[str, ModalitySpec] = Field(min_length=1, description="Modalities by name (text, audio, vision, ...).")
    model: ModelSpec = Field(default_factory=ModelSpec)
    encoders: dict[str, ComponentSpec] = Field(
        min_length=1, description="Encoder per modality name, or 'default' for the ones not listed.")
    imputer: ComponentSpec | None = Field(None, description="Fills missing modalities / masked tokens (optional).")
    aligner: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="identity"))
    fuser: ComponentSpec
    head: ComponentSpec
    losses: dict[str, LossSpec] = Field(default_factory=dict, description="Auxiliary loss weights by name.")
    data: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="synthetic"))
    missing: MissingSpec = Field(default_factory=MissingSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    output_dir: str = Field("runs", description="Where run directories are created.")
