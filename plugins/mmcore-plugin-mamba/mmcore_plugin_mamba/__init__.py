"""Mamba blocks and Mamba-based mmcore components (registered in ``plugin.py``).

The public names are re-exported lazily: importing the package (which ``mmcore plugins`` does
through the entry point) must not import torch.
"""

from __future__ import annotations

from mmcore import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {"MambaBlock": "block", "flip_valid": "block", "BACKENDS": "scan", "resolve_backend": "scan",
            "selective_scan": "scan", "MambaStack": "stack", "BiMambaStack": "stack",
            "InterleavedMambaFuser": "interleaved_mamba", "BimambaTextCentricAligner": "bimamba_text_centric",
            "MambaEncoder": "mamba"}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
