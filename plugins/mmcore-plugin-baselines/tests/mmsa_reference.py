"""Import MMSA 2.2.1's model classes without MMSA's package ``__init__`` files.

Why: ``import MMSA`` (and ``MMSA.models``, ``MMSA.models.subNets``) imports ``transformers`` for the BERT
text encoder, plus the trainers and their dependencies. The classes compared here need only torch. So the
packages ``MMSA``, ``MMSA.models``, ``MMSA.models.subNets`` and ``MMSA.models.singleTask`` are created as
empty module objects pointing at the installed folders, and ``subNets.BertTextEncoder`` is a stub that
raises if instantiated (it is only built when ``use_bert`` is set, which these tests never set).

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


def mmsa_root() -> str | None:
    if "MMSA" in sys.modules:  # already set up by load()
        return sys.modules["MMSA"].__path__[0]
    spec = importlib.util.find_spec("MMSA")  # finds the folder without executing MMSA/__init__.py
    return os.path.dirname(spec.origin) if spec and spec.origin else None


class _BertStub:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("BertTextEncoder is stubbed in the equivalence tests (no transformers)")


def load(model: str):
    """The MMSA class ``model`` (e.g. "TFN") from ``MMSA/models/singleTask/<model>.py``."""
    root = mmsa_root()
    if root is None:
        raise ImportError(f"MMSA is not installed; {INSTALL}")
    for name, rel in (("MMSA", ""), ("MMSA.models", "models"), ("MMSA.models.subNets", "models/subNets"),
                      ("MMSA.models.singleTask", "models/singleTask")):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [os.path.join(root, rel)]
            pkg.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            pkg.__spec__.submodule_search_locations = pkg.__path__
            sys.modules[name] = pkg
    sub = sys.modules["MMSA.models.subNets"]
    if not hasattr(sub, "SubNet"):
        feature_nets = importlib.import_module("MMSA.models.subNets.FeatureNets")
        sub.SubNet, sub.TextSubNet = feature_nets.SubNet, feature_nets.TextSubNet
        sub.BertTextEncoder = _BertStub
    return getattr(importlib.import_module(f"MMSA.models.singleTask.{model}"), model)
