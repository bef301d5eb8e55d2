"""AlignMamba (Li et al., arXiv 2412.00833) Eq. 11: the time-priority interleaving of the ``interleaved_mamba``
fuser, on tokens whose values name their origin, and the Mamba stack that reads it.

Eq. 1-10 and 12 are tested in mmcore-plugin-ot (``tests/test_alignmamba_equations.py``) and the core
(``tests/test_paper_losses.py``): this plugin may not import the OT plugin.
"""

from __future__ import annotations

import pytest
import torch

from mmcore.functional import masked_mean
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_mamba.interleaved_mamba import InterleavedMambaFuser
from mmcore_plugin_mamba.params import InterleavedMambaParams

F64 = torch.float64
D = 4


def tagged(tag: float, T: int) -> torch.Tensor:
    """(1, T, D) float64 whose token t (1-based) holds tag + t in every feature."""
    return (tag + torch.arange(1, T + 1, dtype=F64)).view(1, T, 1).expand(1, T, D).clone()


def fuser(names, **params) -> InterleavedMambaFuser:
    torch.manual_seed(0)
    ctx = BuildContext(modalities={m: ModalityInfo(m, D, 0) for m in names}, d_model=D)
    return InterleavedMambaFuser(InterleavedMambaParams(**params), ctx).double().eval()


def test_eq11_interleaved_sequence_is_a1_v1_l1_a2_v2_l2_and_so_on():
    """Eq. 11: X_mm = [X̃_a^1, X̃_v^1, X_l^1, X̃_a^2, X̃_v^2, X_l^2, ..., X̃_a^T, X̃_v^T, X_l^T]. Audio tokens
    hold 100 + t, vision 200 + t, language 300 + t (T = 3), so by hand X_mm reads
    101, 201, 301, 102, 202, 302, 103, 203, 303 — whatever order the streams are declared or passed in.
    """
    f = fuser(("text", "vision", "audio"))
    seqs = {"text": tagged(300, 3), "audio": tagged(100, 3), "vision": tagged(200, 3)}
    valid = {m: torch.ones(1, 3, dtype=torch.bool) for m in seqs}
    x, v = f.interleaved(seqs, valid)
    expected = torch.tensor([101, 201, 301, 102, 202, 302, 103, 203, 303], dtype=F64)
    assert x.shape == (1, 9, D) and bool(v.all())  # 3T tokens
    assert torch.equal(x[0, :, 0], expected) and torch.equal(x[0], expected[:, None].expand(9, D))


def test_eq11_fused_representation_is_the_mamba_stack_over_X_mm():
    """Eq. 11 and the sentence after it: "the fused representations are obtained by processing the
    constructed sequence through multiple Mamba layers". With X_mm built here by hand (stack a, v, l per
    step, then flatten), the fuser's output equals pool(MambaStack(X_mm)) — mean pooling, this fuser's
    default (AlignMamba names no pooling) — and the stack has ``depth`` = 2 layers.
    """
    f = fuser(("audio", "vision", "text"), depth=2)
    g = torch.Generator().manual_seed(0)
    a, v, l = (torch.randn(2, 3, D, generator=g, dtype=F64) for _ in range(3))
    seqs = {"audio": a, "vision": v, "text": l}
    valid = {m: torch.ones(2, 3, dtype=torch.bool) for m in seqs}
    x_mm = torch.stack([a, v, l], 2).reshape(2, 9, D)  # (B, 3T, d): a1 v1 l1 a2 v2 l2 ...
    with torch.no_grad():
        rep = f(seqs, valid).rep
        full = torch.ones(2, 9, dtype=torch.bool)
        expected = masked_mean(f.mamba(x_mm, full), full)
    assert len(f.mamba.mixers) == 2
    torch.testing.assert_close(rep, expected, rtol=0, atol=1e-12)
