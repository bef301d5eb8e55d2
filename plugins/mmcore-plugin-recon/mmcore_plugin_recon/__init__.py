"""MGMR-Net's gated Mamba reconstruction imputer for mmcore (registered in ``plugin.py``).

The public names are re-exported lazily: importing the package (which ``mmcore plugins`` does
through the entry point) must not import torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {"MambaReconstructionImputer": "mamba_reconstruction", "masked_smooth_l1": "losses",
            "MambaReconstructionParams": "params"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
