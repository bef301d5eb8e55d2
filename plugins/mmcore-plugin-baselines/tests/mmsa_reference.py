"""Import MMSA 2.2.1's model classes without MMSA's package ``__init__`` files.

Why: ``import MMSA`` (and ``MMSA.models``, ``MMSA.models.subNets``) imports ``transformers`` for the BERT
text encoder, plus the trainers and their dependencies. The classes compared here need only torch. So the
packages ``MMSA``, ``MMSA.models``, ``MMSA.models.subNets`` and ``MMSA.models.singleTask`` (or ``multiTask``,
Self-MM) are created as empty module objects pointing at the installed folders, and ``subNets.BertTextEncoder``
is a stub that returns the features a test gives it (``bert_output``) and refuses to run otherwise (MISA and
Self-MM always build it).

Install the reference with: pip install -c constraints.txt --no-deps mmsa==2.2.1
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

INSTALL = "pip install -c constraints.txt --no-deps mmsa==2.2.1"


class Args(dict):
    """MMSA's models read their config as attributes (EasyDict); a dict with attribute access."""

    __getattr__ = dict.__getitem__


def randomise(model, seed: int) -> None:
    """Random weights and BatchNorm statistics of unit-ish scale instead of the default init.

    Why: at the default init the outputs are nearly constant in many inputs (tiny biases, near-uniform
    attention), so a wrong mapping of e.g. a bias could hide under the tolerance; with O(1) weights it cannot.
    Each weight is scaled by 1/sqrt(fan-in) so activations stay O(1) and the LSTMs do not saturate.
    """
    import torch

    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                fan_in = p.shape[-1] if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def mmsa_root() -> str | None:
    if "MMSA" in sys.modules:  # already set up by load()
        return sys.modules["MMSA"].__path__[0]
    spec = importlib.util.find_spec("MMSA")  # finds the folder without executing MMSA/__init__.py
    return os.path.dirname(spec.origin) if spec and spec.origin else None


class _BertStub:
    """Stands in for ``BertTextEncoder``: returns ``_BertStub.features`` (set by a test) instead of running BERT.

    Why: MMSA's MISA asserts ``use_bert`` and reads the text only through this encoder. With the encoder's output
    given, everything after it (the part ported to mmcore) runs unchanged. Unset, it refuses to run.
    """

    features = None

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, text):
        if _BertStub.features is None:
            raise RuntimeError("BertTextEncoder is stubbed in the equivalence tests (no transformers); "
                               "set mmsa_reference.bert_output(features) first")
        return _BertStub.features

    def parameters(self):  # no weights: nothing for an optimizer or a gradient check to see
        return iter(())


def bert_output(features) -> None:
    """What the stubbed BERT returns on its next calls: (B, T, d) features (None = refuse again)."""
    _BertStub.features = features


def _package(name: str, path: str) -> None:
    """Register an empty package ``name`` whose submodules are found in ``path`` (its ``__init__`` never runs)."""
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [path]
        pkg.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        pkg.__spec__.submodule_search_locations = pkg.__path__
        sys.modules[name] = pkg


def load(model: str, task: str = "singleTask"):
    """The MMSA class ``model`` (e.g. "TFN") from ``MMSA/models/<task>/<model>.py`` (task: singleTask, multiTask)."""
    root = mmsa_root()
    if root is None:
        raise ImportError(f"MMSA is not installed; {INSTALL}")
    for name, rel in (("MMSA", ""), ("MMSA.models", "models"), ("MMSA.models.subNets", "models/subNets"),
                      (f"MMSA.models.{task}", f"models/{task}")):
        _package(name, os.path.join(root, rel))
    sub = sys.modules["MMSA.models.subNets"]
    if not hasattr(sub, "SubNet"):
        feature_nets = importlib.import_module("MMSA.models.subNets.FeatureNets")
        sub.SubNet, sub.TextSubNet = feature_nets.SubNet, feature_nets.TextSubNet
        sub.BertTextEncoder = _BertStub
    return getattr(importlib.import_module(f"MMSA.models.{task}.{model}"), model)


def load_trainer(model: str, task: str = "singleTask"):
    """MMSA's trainer module ``MMSA/trains/<task>/<model>.py`` (its loss classes, methods), without MMSA's
    ``__init__`` files; ``MMSA.utils`` (sklearn, pynvml) is replaced by placeholders the loss classes never use."""
    root = mmsa_root()
    if root is None:
        raise ImportError(f"MMSA is not installed; {INSTALL}")
    load("TFN")  # sets up the MMSA package objects
    for name, rel in (("MMSA.trains", "trains"), (f"MMSA.trains.{task}", f"trains/{task}")):
        _package(name, os.path.join(root, rel))
    if "MMSA.utils" not in sys.modules:
        utils = types.ModuleType("MMSA.utils")
        utils.MetricsTop = utils.dict_to_str = None
        sys.modules["MMSA.utils"] = utils
    return importlib.import_module(f"MMSA.trains.{task}.{model}")


def with_mmsa_weights(name: str, ref, fuser, ctx, head_params, train: bool, *mapping, **mapping_kw):
    """The ``mmsa_output`` head on ``fuser``; fuser and head loaded (strict) with ``ref``'s weights through
    ``from_mmsa(name, ref.state_dict(), ctx.names, *mapping, **mapping_kw)``; ``ref``, fuser and head put in
    train(train) mode. Returns the head."""
    from mmcore.protocols import BuildContext
    from mmcore_plugin_baselines import MmsaOutputHead
    from mmcore_plugin_baselines.mmsa_mapping import from_mmsa

    head = MmsaOutputHead(head_params, BuildContext(modalities=ctx.modalities, d_model=ctx.d_model,
                                                    in_dim=fuser.out_dim))
    fs, hs = from_mmsa(name, ref.state_dict(), ctx.names, *mapping, **mapping_kw)
    fuser.load_state_dict(fs, strict=True)
    head.load_state_dict(hs, strict=True)
    for mod in (ref, fuser, head):
        mod.train(train)
    return head


def assert_grads_equal_mmsa(name: str, ref, fuser, head, names, *mapping, atol: float, rtol: float, inputs=None,
                            **mapping_kw) -> None:
    """After a backward pass on both sides: every parameter gradient of ``fuser`` and ``head`` equals MMSA's,
    mapped through ``from_mmsa(name, grads, names, *mapping, **mapping_kw)`` (an MMSA parameter without a
    gradient counts as zeros); with ``inputs=(ours, theirs)``, the input gradients too."""
    import torch

    from mmcore_plugin_baselines.mmsa_mapping import from_mmsa

    grads = {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in ref.named_parameters()
             if p.requires_grad}
    f_grad, h_grad = from_mmsa(name, grads, names, *mapping, **mapping_kw)
    for mod, expected in ((fuser, f_grad), (head, h_grad)):
        for k, p in mod.named_parameters():
            torch.testing.assert_close(p.grad, expected[k], atol=atol, rtol=rtol, msg=lambda m: f"{name} {k}: {m}")
    if inputs is not None:
        ours, theirs = inputs
        for m in ours:
            torch.testing.assert_close(ours[m].grad, theirs[m].grad, atol=atol, rtol=rtol)
