"""Optional capabilities a component may declare: the whole list, typed, defaulted, in one place.

A component is an ``nn.Module`` built as ``cls(params, ctx)`` whose ``forward`` follows its kind's
protocol (:mod:`mmcore.protocols`). Everything below is optional; a component that declares
nothing gets the default. The core (builder, pipeline, trainer, plots, alignment scoring,
:mod:`mmcore.testing`) reads capabilities only through the functions here, and the contract test
checks that what a component declares has the right type.

| capability | kind / default | meaning |
|---|---|---|
| ``accepts_missing`` | aligner / ``False`` | ``forward(seqs, valid, missing={m: (B,) bool})`` gets the rows whose modality is absent |
| ``accepts_batch`` | fuser / ``False`` | ``forward(seqs, valid, batch=Batch)`` also gets the batch (``labels``, ``index``): for per-sample training state such as Self-MM's label memories; the representation must not read ``batch.labels`` |
| ``output_streams`` | aligner / ``None`` | the streams it returns when they are not the modalities; the fuser is built for these |
| ``anchor`` | aligner / ``None`` | the modality the others are aligned onto |
| ``alignment_plans()`` | aligner / absent | ``{m: (B, T_anchor, T_m)}`` plans of the last forward, detached (plots, alignment accuracy) |
| ``training_phases(epochs)`` | any / absent | a list of :class:`mmcore.phases.Phase`; at most one component of a pipeline declares phases |
| ``set_step(phase, step)`` | any / absent | called before every training step and with ``("eval", "eval")`` before evaluation |
| ``has_unused_parameters`` | any / ``False`` | some parameters get no gradient in some steps (DDP's ``find_unused_parameters``) |
| ``contract_skip`` | any / ``{}`` | ``{check: reason}``: contract checks skipped by design |
| ``contract_no_grad`` | any / ``{}`` | ``{param_glob: reason}``: parameters allowed no gradient |

Example (an aligner that sees missing rows, returns its own streams and shows its plans)::

    class MyAligner(nn.Module):
        accepts_missing = True
        anchor = "text"
        def __init__(self, params, ctx):
            super().__init__()
            self.output_streams = list(ctx.modalities) + ["shared"]
        def alignment_plans(self):
            return self._plans
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["CAPABILITIES", "accepts_missing", "accepts_batch", "output_streams", "anchor", "alignment_plans", "training_phases",
           "set_step", "has_unused_parameters", "contract_skip", "contract_no_grad", "check_declared"]

#: name -> (expected type description, predicate on the declared value); methods are checked as callables
CAPABILITIES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "accepts_missing": ("bool", lambda v: isinstance(v, bool)),
    "accepts_batch": ("bool", lambda v: isinstance(v, bool)),
    "output_streams": ("list of str", lambda v: v is None or (isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v))),
    "anchor": ("str", lambda v: v is None or isinstance(v, str)),
    "alignment_plans": ("method", callable),
    "training_phases": ("method", callable),
    "set_step": ("method", callable),
    "has_unused_parameters": ("bool", lambda v: isinstance(v, bool)),
    "contract_skip": ("dict of check -> reason", lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(r, str) and r.strip() for k, r in v.items())),
    "contract_no_grad": ("dict of glob -> reason", lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(r, str) and r.strip() for k, r in v.items())),
}


def accepts_missing(component) -> bool:
    """Whether the aligner's forward takes ``missing=``."""
    return bool(getattr(component, "accepts_missing", False))


def accepts_batch(component) -> bool:
    """Whether the fuser's forward takes ``batch=``."""
    return bool(getattr(component, "accepts_batch", False))


def output_streams(aligner, modalities: list[str]) -> list[str]:
    """The streams the aligner returns: its ``output_streams``, else the modalities."""
    return list(getattr(aligner, "output_streams", None) or modalities)


def anchor(aligner) -> str | None:
    """The aligner's anchor modality, or None."""
    value = getattr(aligner, "anchor", None)
    return value if isinstance(value, str) else None


def alignment_plans(aligner) -> Callable[[], dict] | None:
    """The bound ``alignment_plans`` method, or None when the aligner (instance or class) has none."""
    method = getattr(aligner, "alignment_plans", None)
    return method if callable(method) else None


def training_phases(component, epochs: int):
    """The phases the component declares for ``epochs`` epochs, or None."""
    method = getattr(component, "training_phases", None)
    return method(epochs) if callable(method) else None


def set_step(component, phase: str, step: str) -> None:
    """Tell the component which phase and step comes next (no-op when it does not care)."""
    method = getattr(component, "set_step", None)
    if callable(method):
        method(phase, step)


def has_unused_parameters(component) -> bool:
    """Whether some of the component's parameters may get no gradient in a step."""
    return bool(getattr(component, "has_unused_parameters", False))


def contract_skip(cls) -> dict[str, str]:
    """``{check: reason}`` of the contract checks the component skips by design."""
    return dict(getattr(cls, "contract_skip", {}) or {})


def contract_no_grad(cls) -> dict[str, str]:
    """``{param_glob: reason}`` of the parameters allowed to get no gradient."""
    return dict(getattr(cls, "contract_no_grad", {}) or {})


def check_declared(obj) -> list[str]:
    """Problems with the capabilities ``obj`` (a class or an instance) declares: wrong types, empty reasons."""
    problems = []
    for name, (want, ok) in CAPABILITIES.items():
        if not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        if not ok(value):
            problems.append(f"{name} must be a {want}, got {type(value).__name__} {value!r:.80}")
    return problems
