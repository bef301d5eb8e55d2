"""The classic multimodal sentiment baselines as mmcore components (registered in ``plugin.py``).

The public names are re-exported lazily: importing the package (which ``mmcore plugins`` does
through the entry point) must not import torch.
"""

from __future__ import annotations

from mmcore import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {"TFNFuser": "tfn", "LMFFuser": "lmf", "LFDNNFuser": "lf_dnn", "EFLSTMFuser": "ef_lstm",
            "MFNFuser": "mfn", "MFMFuser": "mfm", "MISAFuser": "misa", "SelfMMFuser": "self_mm", "MmsaMultFuser": "mmsa_mult", "MmsaOutputHead": "mmsa_output"}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
