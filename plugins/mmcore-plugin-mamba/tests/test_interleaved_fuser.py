"""interleaved_mamba: time-priority order, row compaction, padding invariance, pooling, unequal lengths."""

from __future__ import annotations

import pytest
import torch

from mmcore.functional import masked_max, masked_mean
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_mamba._interleave import deinterleave, interleave
from mmcore_plugin_mamba.interleaved_mamba import InterleavedMambaFuser
from mmcore_plugin_mamba.params import InterleavedMambaParams
from mmcore_plugin_mamba.stack import MambaStack

D = 8
ATOL = 1e-5  # float32 round-off: the same arithmetic on the same valid tokens, only padding differs


def ctx(*names: str, dropout: float = 0.0) -> BuildContext:
    return BuildContext(modalities={m: ModalityInfo(m, 4, 0) for m in names}, d_model=D, dropout=dropout)


def fuser(*names: str, seed: int = 0, **params) -> InterleavedMambaFuser:
    torch.manual_seed(seed)
    return InterleavedMambaFuser(InterleavedMambaParams(backend="torch", **params), ctx(*names)).eval()


def tagged(tag: float, T: int, B: int = 1) -> torch.Tensor:
    """(B, T, D) whose token t holds tag + t + 1 in every feature: a token's origin is readable."""
    return (tag + torch.arange(1, T + 1.0)).view(1, T, 1).expand(B, T, D).clone()


def prefix(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T) < torch.tensor(lengths)[:, None]  # (B, T)


def test_interleaving_order_is_audio_vision_text_per_time_step():
    f = fuser("text", "vision", "audio")  # declared in another order: AlignMamba's a, v, l still wins
    T = 3
    seqs = {"audio": tagged(100, T), "vision": tagged(200, T), "text": tagged(300, T)}
    valid = {m: torch.ones(1, T, dtype=torch.bool) for m in seqs}
    x, v = f.interleaved(seqs, valid)
    assert x[0, :, 0].tolist() == [101, 201, 301, 102, 202, 302, 103, 203, 303]  # [a1, v1, l1, a2, v2, l2, ...]
    assert v.all()


def test_order_param_puts_the_listed_streams_first_and_the_rest_after():
    f = fuser("text", "audio", "vision", order=("text",))
    seqs = {"audio": tagged(100, 2), "vision": tagged(200, 2), "text": tagged(300, 2)}
    x, _ = f.interleaved(seqs, {m: torch.ones(1, 2, dtype=torch.bool) for m in seqs})
    assert x[0, :, 0].tolist() == [301, 101, 201, 302, 102, 202]


def test_unequal_valid_lengths_are_compacted_into_a_prefix_in_time_priority_order():
    f = fuser("audio", "vision", "text")
    B = 2
    seqs = {"audio": tagged(100, 3, B), "vision": tagged(200, 2, B), "text": tagged(300, 4, B)}
    valid = {"audio": prefix([3, 1], 3), "vision": prefix([2, 2], 2), "text": prefix([4, 2], 4)}
    x, v = f.interleaved(seqs, valid)
    assert x.shape[1] == 9  # the longest row: 3 + 2 + 4 tokens
    assert x[0, :, 0].tolist() == [101, 201, 301, 102, 202, 302, 103, 303, 304]
    assert x[1, :5, 0].tolist() == [101, 201, 301, 202, 302]  # audio's hole at t=2 is skipped, not kept
    assert v.tolist() == [[True] * 9, [True] * 5 + [False] * 4]
    assert (x[1, 5:] == 0).all()


def test_deinterleave_inverts_interleave_on_valid_tokens():
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, T, D, generator=g) for T in (5, 2, 4)]
    vs = [prefix(lens, T) for lens, T in (([5, 0, 3], 5), ([2, 1, 0], 2), ([1, 4, 4], 4))]
    for time_major in (True, False):
        back = deinterleave(interleave(xs, vs, time_major=time_major).x, interleave(xs, vs, time_major=time_major))
        for x, v, y in zip(xs, vs, back):
            torch.testing.assert_close(y, x * v[..., None], rtol=0, atol=0)


@pytest.mark.parametrize("unequal", ["pad", "resample"])
@pytest.mark.parametrize("pool", ["mean", "max", "last"])
def test_changing_padded_positions_changes_nothing(unequal, pool):
    f = fuser("audio", "vision", "text", unequal_lengths=unequal, pool=pool, modality_embedding=True)
    g = torch.Generator().manual_seed(1)
    lengths = {"audio": ([5, 1, 3], 5), "vision": ([6, 6, 2], 6), "text": ([7, 3, 1], 7)}  # the contract's T
    valid = {m: prefix(lens, T) for m, (lens, T) in lengths.items()}
    seqs = {m: torch.randn(3, T, D, generator=g) * valid[m][..., None] for m, (_, T) in lengths.items()}
    with torch.no_grad():
        ref = f(seqs, valid).rep
        for fill in (1e3, float("nan")):
            noisy = {m: torch.where(valid[m][..., None], x, torch.randn(x.shape, generator=g) * fill)
                     for m, x in seqs.items()}
            torch.testing.assert_close(f(noisy, valid).rep, ref, rtol=0, atol=ATOL)


def test_pooling_modes_read_the_valid_tokens_of_the_mamba_output():
    g = torch.Generator().manual_seed(2)
    valid = {"audio": prefix([4, 2], 4), "vision": prefix([4, 1], 4), "text": prefix([4, 3], 4)}
    seqs = {m: torch.randn(2, 4, D, generator=g) for m in valid}
    reps = {p: fuser("audio", "vision", "text", pool=p) for p in ("mean", "max", "last")}
    with torch.no_grad():
        x, v = reps["mean"].interleaved(seqs, valid)
        h = reps["mean"].mamba(x, v)  # same seed: same weights in the three fusers
        n = v.sum(1)  # (B,) 12 and 6 tokens
        torch.testing.assert_close(reps["mean"](seqs, valid).rep, masked_mean(h, v))
        torch.testing.assert_close(reps["max"](seqs, valid).rep, masked_max(h, v))
        torch.testing.assert_close(reps["last"](seqs, valid).rep, h[torch.arange(2), n - 1])
    assert n.tolist() == [12, 6]


def test_one_stream_is_a_mamba_stack_and_pool():
    f = fuser("audio", depth=2, pool="mean")
    torch.manual_seed(0)
    stack = MambaStack(D, 2, backend="torch").eval()  # same construction order: same initial weights
    x = torch.randn(2, 5, D)
    v = prefix([5, 3], 5)
    with torch.no_grad():
        torch.testing.assert_close(f({"audio": x}, {"audio": v}).rep, masked_mean(stack(x, v), v))


def test_resample_stretches_every_stream_to_the_rows_longest():
    f = fuser("audio", "vision", unequal_lengths="resample")
    seqs = {"audio": tagged(100, 2), "vision": tagged(200, 4)}
    x, v = f.interleaved(seqs, {m: torch.ones(1, s.shape[1], dtype=torch.bool) for m, s in seqs.items()})
    assert x[0, :, 0].tolist() == [101, 201, 101, 202, 102, 203, 102, 204]  # audio 1,1,2,2 against vision 1..4
    assert v.all()


def test_unequal_lengths_error_names_the_lengths_and_suggests_an_aligner():
    f = fuser("audio", "vision", "text", unequal_lengths="error")
    seqs = {"audio": torch.zeros(1, 5, D), "vision": torch.zeros(1, 6, D), "text": torch.zeros(1, 7, D)}
    valid = {m: torch.ones(1, x.shape[1], dtype=torch.bool) for m, x in seqs.items()}
    with pytest.raises(ValueError, match=r"audio T=5, vision T=6, text T=7; put an aligner first \(e\.g\. relaxed_ot"):
        f(seqs, valid)
    aligned = {m: torch.zeros(1, 7, D) for m in seqs}
    assert f(aligned, {m: torch.ones(1, 7, dtype=torch.bool) for m in seqs}).rep.shape == (1, D)


def test_missing_stream_and_unknown_order_raise_with_expected_and_actual():
    f = fuser("audio", "text")
    with pytest.raises(ValueError, match=r"built for streams \['audio', 'text'\] .* missing \['text'\]"):
        f({"audio": torch.zeros(1, 2, D)}, {"audio": torch.ones(1, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"order names \['vision'\], but the fuser receives the streams"):
        fuser("audio", "text", order=("vision",))


def test_every_parameter_gets_a_gradient():
    f = fuser("audio", "vision", "text", modality_embedding=True, pool="max").train()
    seqs = {m: torch.randn(2, 3, D) for m in ("audio", "vision", "text")}
    f(seqs, {m: prefix([3, 2], 3) for m in seqs}).rep.sum().backward()
    assert [n for n, p in f.named_parameters() if p.grad is None] == []
