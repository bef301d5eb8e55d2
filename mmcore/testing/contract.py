"""The registry contract test: every registered component, core or plugin, must pass it.

Usage in a plugin's tests::

    import pytest
    from mmcore.testing import check_component, contract_cases

    @pytest.mark.parametrize("kind,name", contract_cases(provider="mmcore-plugin-ot"))
    def test_contract(kind, name):
        check_component(kind, name)

Checks (tiny synthetic batch, B = 2, T ∈ {1, 7}, d = 16): builds from default params; output
shapes and dtype; finite values; every trainable parameter gets a gradient; changing padded
positions changes no valid output; NaN, inf or 1e6 in padded positions (``padding_nan``) leaves
every valid output, aux loss, input gradient and parameter gradient finite; a row with a missing modality runs; auxiliary losses are
finite scalars under declared names; a fuser given the batch (``accepts_batch``) does not read its labels
for the representation; params round-trip through YAML; a plugin's component has a
``## <name>`` section in its distribution's README.

A component opts out of one check only through an explicit flag with a reason::

    contract_skip = {"padding_invariance": "attends over padding by design because ..."}
    contract_no_grad = {"fitter.*": "trained only in the ADL fitter step"}
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import replace

import torch
import yaml
from torch import Tensor

from .. import capabilities
from ..batch import Batch
from ..protocols import AlignerOutput, BuildContext, FuserOutput, ImputerOutput, ModalityInfo, PipelineState
from ..registry import BUILTIN_PROVIDER, Registry, get_registry

D_MODEL = 16
LENGTHS = {"text": 7, "audio": 5, "vision": 6}
DIMS = {"text": 12, "audio": 5, "vision": 8}
ATOL = 1e-5  # padding invariance: float32 round-off only


class ContractError(AssertionError):
    """A component broke the registry contract; the message says which check and how."""


def tiny_context(**changes) -> BuildContext:
    """The BuildContext the contract uses: text/audio/vision with small, different dims/lengths."""
    mods = {m: ModalityInfo(m, DIMS[m], LENGTHS[m], "unk" if m == "text" else "zero") for m in DIMS}
    return replace(BuildContext(modalities=mods, d_model=D_MODEL, dropout=0.0), **changes)


def _valid(B: int, T: int) -> Tensor:
    lens = torch.tensor([T] + [max(1, T - 3 - i) for i in range(B - 1)])
    return torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)  # (B, T) prefix masks


def synthetic_batch(B: int = 2, lengths: dict[str, int] | None = None, dims: dict[str, int] | None = None,
                    seed: int = 0, missing: str | None = "audio") -> Batch:
    """A tiny padded batch; the last row has modality ``missing`` absent and a few masked tokens."""
    g = torch.Generator().manual_seed(seed)
    lengths, dims = lengths or LENGTHS, dims or DIMS
    feats, valid, miss, masked = {}, {}, {}, {}
    for m, T in lengths.items():
        valid[m] = _valid(B, T)
        feats[m] = torch.randn(B, T, dims[m], generator=g) * valid[m].unsqueeze(-1)
        miss[m] = torch.zeros(B, dtype=torch.bool)
        masked[m] = torch.zeros(B, T, dtype=torch.bool)
        masked[m][0, 0] = T > 1
    clean = {m: x.clone() for m, x in feats.items()}
    if missing in feats:
        miss[missing][-1] = True
        feats[missing][-1] = 0.0
    for m in feats:
        feats[m] = feats[m].masked_fill(masked[m].unsqueeze(-1), 0.0)
    return Batch(features=feats, valid=valid, labels=torch.randn(B, generator=g), missing=miss, masked=masked,
                 clean=clean, index=torch.arange(B))


def contract_cases(kind: str | None = None, provider: str | None = None, registry: Registry | None = None):
    """(kind, name) pairs to parametrise a contract test over, optionally for one provider."""
    registry = registry or get_registry()
    return [(e.kind, e.name) for e in registry.entries(kind)
            if e.kind != "dataset" and (provider is None or e.provider == provider)]


def _fail(kind: str, name: str, check: str, msg: str):
    raise ContractError(f"{kind} {name!r} fails the contract check '{check}': {msg}")


def _finite(kind, name, what: str, t: Tensor):
    if not torch.isfinite(t).all():
        _fail(kind, name, "finite", f"{what} has NaN/inf")


def _encoded(batch: Batch, g: torch.Generator) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    seqs = {m: (torch.randn(*batch.valid[m].shape, D_MODEL, generator=g) * batch.valid[m].unsqueeze(-1)).requires_grad_()
            for m in batch.features}
    return seqs, dict(batch.valid)


def _run(kind: str, module, batch: Batch, seqs: dict[str, Tensor], valid: dict[str, Tensor], ctx: BuildContext,
         name: str = "?"):
    """One forward for the kind; returns (tensors to check and differentiate, aux losses)."""
    if kind == "encoder":
        m = ctx.modality
        return [module(batch.features[m], batch.valid[m])], {}, [batch.valid[m]]
    if kind == "aligner":
        kw = {"missing": dict(batch.missing)} if capabilities.accepts_missing(module) else {}
        out = module(seqs, valid, **kw)
        if not isinstance(out, AlignerOutput):
            _fail(kind, name, "output type", f"must return AlignerOutput, got {type(out).__name__}")
        keys = list(out.seqs)
        return [out.seqs[k] for k in keys], out.aux, [out.valid[k] for k in keys]
    if kind == "fuser":
        out = module(seqs, valid, **({"batch": batch} if capabilities.accepts_batch(module) else {}))
        if not isinstance(out, FuserOutput):
            _fail(kind, name, "output type", f"must return FuserOutput, got {type(out).__name__}")
        return [out.rep], out.aux, [None]
    if kind == "imputer":
        out = module(seqs, batch)
        if not isinstance(out, ImputerOutput):
            _fail(kind, name, "output type", f"must return ImputerOutput, got {type(out).__name__}")
        return [out.seqs[m] for m in seqs], out.aux, [valid[m] for m in seqs]
    if kind == "head":
        rep = seqs["text"].sum(1)
        pred = module(rep)
        labels = torch.arange(pred.shape[0]) % pred.shape[-1] if pred.dim() == 2 else batch.labels
        loss = module.loss(pred, labels)
        if loss.dim() != 0:
            _fail(kind, name, "loss", f"loss(pred, labels) must be a scalar, got shape {tuple(loss.shape)}")
        return [pred], {"__task__": loss}, [None]
    if kind == "loss":
        rep = seqs["text"].sum(1)
        state = PipelineState(batch, seqs, seqs, seqs, valid, rep, rep.sum(-1))
        return [module(state).reshape(1)], {}, [None]
    raise ValueError(f"no contract for kind {kind!r}")


#: What padded positions are filled with by the "padding_nan" check: masked positions must contribute
#: exactly nothing, to the forward pass and to every gradient (a `where` in the forward is not enough
#: when a product with the padded value survives in the backward pass).
PADDING_JUNK = (float("nan"), float("inf"), 1e6)


def check_junk_padding(kind: str, name: str, junk: float, *, lengths: dict[str, int] | None = None,
                       batch_size: int = 2, seed: int = 0, params: dict | None = None,
                       registry: Registry | None = None) -> None:
    """The ``padding_nan`` check on one drawn case (for property-based tests): ``junk`` (NaN, ±inf, a
    huge number) in every padded position of a ``batch_size`` batch with the given modality lengths.

    Raises :class:`ContractError` when a valid output, an aux loss or a gradient is not finite.
    """
    registry = registry or get_registry()
    entry = registry.get(kind, name)
    cls = entry.load()
    if "padding_nan" in capabilities.contract_skip(cls):
        return
    lengths = lengths or LENGTHS
    ctx = tiny_context(modalities={m: ModalityInfo(m, DIMS[m], lengths[m], "unk" if m == "text" else "zero")
                                   for m in DIMS})
    if kind == "encoder":
        ctx = replace(ctx, modality="audio", in_dim=DIMS["audio"])
    torch.manual_seed(seed)
    module = cls(entry.params(**(params or {})), ctx)
    batch = synthetic_batch(B=batch_size, lengths=lengths, seed=seed)
    seqs, valid = _encoded(batch, torch.Generator().manual_seed(seed))
    T = max(lengths.values())
    _check_junk_padding(kind, name, module, batch, seqs, valid, ctx, junk,
                        capabilities.contract_no_grad(cls), T)


def _check_junk_padding(kind, name, module, batch, seqs, valid, ctx, junk: float, no_grad, T: int) -> None:
    """NaN / inf / 1e6 at padded positions: finite valid outputs, finite gradients of valid inputs and params."""
    module.train()
    module.zero_grad(set_to_none=True) if hasattr(module, "zero_grad") else None
    bad = {m: torch.where(valid[m].unsqueeze(-1), seqs[m].detach(), torch.full_like(seqs[m], junk)).requires_grad_()
           for m in seqs}
    feats = {m: torch.where(batch.valid[m].unsqueeze(-1), x, torch.full_like(x, junk)).requires_grad_()
             for m, x in batch.features.items()}
    nb = batch.replace(features=feats)
    outs, aux, out_valid = _run(kind, module, nb, bad, valid, ctx, name)
    what = f"with {junk} in padded positions (T={T})"
    total = 0.0
    for i, (o, vm) in enumerate(zip(outs, out_valid)):
        keep = vm.unsqueeze(-1).expand_as(o) if (vm is not None and o.dim() == 3) else torch.ones_like(o, dtype=torch.bool)
        if not torch.isfinite(o[keep]).all():
            _fail(kind, name, "padding_nan", f"output {i} is not finite at valid positions {what}")
        total = total + torch.where(keep, o, torch.zeros((), dtype=o.dtype)).sum()
    for k, v in aux.items():
        if not torch.isfinite(v).all():
            _fail(kind, name, "padding_nan", f"aux loss {k!r} is not finite {what}")
        total = total + v
    total.backward()
    leaves = [(f"input {m}", bad[m], valid[m]) for m in bad] + [(f"features {m}", feats[m], batch.valid[m]) for m in feats]
    for label, x, vm in leaves:
        if x.grad is not None and not torch.isfinite(x.grad[vm]).all():
            _fail(kind, name, "padding_nan", f"the gradient of {label} is not finite at valid positions {what}: a "
                  "masked position leaks into the backward pass (zero padded inputs with torch.where before any "
                  "arithmetic)")
    for pname, p in module.named_parameters():
        if p.grad is not None and not any(fnmatch.fnmatchcase(pname, pat) for pat in no_grad) \
                and not torch.isfinite(p.grad).all():
            _fail(kind, name, "padding_nan", f"parameter {pname!r} got a non-finite gradient {what}")


def check_documented(kind: str, name: str, registry: Registry | None = None) -> None:
    """A plugin's component has a ``## <name>`` section in its distribution's README (its long
    description). Built-ins are documented in docs/components.md (checked by the core's tests);
    in-process registrations have no distribution and are not checked."""
    from importlib import metadata

    entry = (registry or get_registry()).get(kind, name)
    if entry.provider == BUILTIN_PROVIDER:
        return
    try:
        meta = metadata.metadata(entry.provider)
    except metadata.PackageNotFoundError:
        return
    text = (meta.get_payload() or meta.get("Description") or "").replace("`", "")
    if f"## {name}" not in text:
        _fail(kind, name, "documented", f"the README of {entry.provider} (its long description) needs a "
              f"'## {name}' section with the equation, paper section and params")


def check_component(kind: str, name: str, registry: Registry | None = None, *, seed: int = 0,
                    params: dict | None = None) -> None:
    """Run the contract for one registered component; raise :class:`ContractError` on a breach.

    ``params``: a non-default configuration to check (e.g. ``{"reference": "authors"}``); default params otherwise.
    """
    registry = registry or get_registry()
    entry = registry.get(kind, name)
    check_documented(kind, name, registry)
    params = entry.params(**(params or {}))
    # config round-trip through YAML
    dumped = yaml.safe_load(yaml.safe_dump(params.model_dump(mode="json")))
    if entry.params.model_validate(dumped) != params:
        _fail(kind, name, "config round-trip", "params changed after model_dump -> YAML -> model_validate")
    if kind == "dataset":
        return
    cls = entry.load()
    problems = capabilities.check_declared(cls)
    if problems:
        _fail(kind, name, "capabilities", "; ".join(problems) + " (see mmcore.capabilities)")
    skip = capabilities.contract_skip(cls)
    no_grad = capabilities.contract_no_grad(cls)
    for T in (7, 1):
        lengths = {m: (T if m == "text" else max(1, L - (7 - T))) for m, L in LENGTHS.items()} if T != 7 else LENGTHS
        ctx = tiny_context(modalities={m: ModalityInfo(m, DIMS[m], lengths[m], "unk" if m == "text" else "zero")
                                       for m in DIMS})
        if kind == "encoder":
            ctx = replace(ctx, modality="audio", in_dim=DIMS["audio"])
        if kind == "head":  # a regression head ignores num_outputs; a classification head gets 3 classes
            ctx = replace(ctx, in_dim=D_MODEL, num_outputs=3)
        torch.manual_seed(seed)
        module = cls(params, ctx)
        module.train()
        for p in module.parameters():
            p.grad = None
        g = torch.Generator().manual_seed(seed + T)
        batch = synthetic_batch(lengths=lengths, seed=seed + T)
        seqs, valid = _encoded(batch, g)
        outs, aux, out_valid = _run(kind, module, batch, seqs, valid, ctx, name)
        B = batch.batch_size
        for i, o in enumerate(outs):
            if o.shape[0] != B and kind != "loss":
                _fail(kind, name, "shape", f"output {i} has batch dim {o.shape[0]}, expected {B}")
            if not o.is_floating_point():
                _fail(kind, name, "dtype", f"output {i} is {o.dtype}, expected a float tensor")
            _finite(kind, name, f"output {i} (T={T})", o)
            if kind in ("aligner", "imputer") and (o.dim() != 3 or o.shape[-1] != D_MODEL):
                _fail(kind, name, "shape", f"sequence outputs must be (B, T, d={D_MODEL}); got {tuple(o.shape)}")
        if kind == "encoder" and outs[0].shape != (B, lengths["audio"], D_MODEL):
            _fail(kind, name, "shape", f"expected {(B, lengths['audio'], D_MODEL)}, got {tuple(outs[0].shape)}")
        if kind == "fuser" and outs[0].shape != (B, module.out_dim):
            _fail(kind, name, "shape", f"expected rep (B, out_dim={module.out_dim}), got {tuple(outs[0].shape)}")
        declared = set(entry.aux_losses) | {"__task__"}
        for k, v in aux.items():
            if k not in declared:
                _fail(kind, name, "aux names", f"returned aux loss {k!r} not declared at registration "
                      f"(declared: {sorted(declared) or 'none'})")
            if v.dim() != 0:
                _fail(kind, name, "aux shape", f"aux loss {k!r} must be a scalar, got shape {tuple(v.shape)}")
            _finite(kind, name, f"aux loss {k!r}", v)
        # gradients reach every trainable parameter
        total = sum((o * (vm.unsqueeze(-1).to(o.dtype) if vm is not None and o.dim() == 3 else 1.0)).sum()
                    for o, vm in zip(outs, out_valid))
        total = total + sum(aux.values()) if aux else total
        total.backward()
        for pname, p in module.named_parameters():
            if not p.requires_grad or any(fnmatch.fnmatchcase(pname, pat) for pat in no_grad):
                continue
            if p.grad is None or not torch.isfinite(p.grad).all():
                _fail(kind, name, "gradients", f"parameter {pname!r} got {'no' if p.grad is None else 'a non-finite'} "
                      "gradient (declare contract_no_grad with a reason if that is by design)")
        # changing padded positions changes no valid output
        if "padding_invariance" not in skip and kind not in ("head", "loss"):
            module.eval()
            with torch.no_grad():
                torch.manual_seed(seed)
                ref, _, _ = _run(kind, module, batch, seqs, valid, ctx, name)
                noisy = {m: torch.where(valid[m].unsqueeze(-1), seqs[m], torch.randn_like(seqs[m]) * 5) for m in seqs}
                nb = batch.replace(features={m: torch.where(batch.valid[m].unsqueeze(-1), x, torch.randn_like(x) * 5)
                                             for m, x in batch.features.items()})
                torch.manual_seed(seed)
                new, _, _ = _run(kind, module, nb, noisy, valid, ctx, name)
            for i, (a, b, vm) in enumerate(zip(ref, new, out_valid)):
                if a.shape != b.shape:
                    _fail(kind, name, "padding invariance", f"output {i} changed shape")
                mask = vm.unsqueeze(-1).expand_as(a) if (vm is not None and a.dim() == 3) else torch.ones_like(a, dtype=torch.bool)
                diff = (a - b).abs()[mask].max().item() if mask.any() else 0.0
                if not math.isfinite(diff) or diff > ATOL * (1 + a.abs().max().item()):
                    _fail(kind, name, "padding invariance", f"output {i} changed by {diff:.3g} at valid positions when "
                          "only padded inputs changed (T=%d)" % T)
        # a fuser that gets the batch (accepts_batch) may keep label state for training, never predict from labels
        if kind == "fuser" and capabilities.accepts_batch(module) and "labels_unused" not in skip:
            module.eval()
            with torch.no_grad():
                torch.manual_seed(seed)
                ref, _, _ = _run(kind, module, batch, seqs, valid, ctx, name)
                torch.manual_seed(seed)
                new, _, _ = _run(kind, module, batch.replace(labels=batch.labels * -3.0 + 7.0), seqs, valid, ctx, name)
            if not torch.equal(ref[0], new[0]):
                _fail(kind, name, "labels unused", "the representation changed when only batch.labels changed "
                      "(accepts_batch gives the labels for training state, not for the prediction)")
        if "padding_nan" not in skip and kind not in ("head", "loss"):
            for junk in PADDING_JUNK:
                _check_junk_padding(kind, name, module, batch, seqs, valid, ctx, junk, no_grad, T)
