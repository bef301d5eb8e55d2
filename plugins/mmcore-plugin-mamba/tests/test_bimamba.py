"""bimamba_text_centric and BiMambaStack: direction averaging, pairing of text and m, anchor handling."""

from __future__ import annotations

import pytest
import torch

from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_mamba.bimamba_text_centric import BimambaTextCentricAligner
from mmcore_plugin_mamba.params import BimambaTextCentricParams
from mmcore_plugin_mamba.stack import BiMambaStack

D = 8
ATOL = 1e-5  # float32 round-off only: the hand computations run the same modules on the same tokens


def ctx(*names: str) -> BuildContext:
    return BuildContext(modalities={m: ModalityInfo(m, 4, 0) for m in names}, d_model=D)


def aligner(*names: str, seed: int = 0, **params) -> BimambaTextCentricAligner:
    torch.manual_seed(seed)
    params = {"d_state": 4, "expand": 2, "backend": "torch", **params}
    return BimambaTextCentricAligner(BimambaTextCentricParams(**params), ctx(*names)).eval()


def prefix(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T) < torch.tensor(lengths)[:, None]


def text_audio() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One row of text (3 tokens) and audio (5 tokens) from the global generator, all valid."""
    seqs = {"text": torch.randn(1, 3, D), "audio": torch.randn(1, 5, D)}
    return seqs, {m: torch.ones(1, x.shape[1], dtype=torch.bool) for m, x in seqs.items()}


def reverse_rows(x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Reverse each row's first lengths[b] tokens by hand (a loop, independent of flip_valid)."""
    out = x.clone()
    for b, n in enumerate(lengths):
        out[b, :n] = x[b, :n].flip(0)
    return out


def test_bidirectional_is_the_average_of_the_forward_and_the_flipped_backward_pass():
    torch.manual_seed(0)
    bi = BiMambaStack(D, 1, d_state=4, backend="torch").eval()
    lengths = [5, 3]
    x, v = torch.randn(2, 5, D), prefix(lengths, 5)
    with torch.no_grad():
        h_f = bi.forward_stack(x, v)
        h_b = reverse_rows(bi.backward_stack(reverse_rows(x, lengths), v), lengths)
        expected = (0.5 * (h_f + h_b)) * v[..., None]
        torch.testing.assert_close(bi(x, v), expected, rtol=0, atol=ATOL)
        # every valid output depends on later tokens too (not causal), but never on padding
        x2 = x.clone()
        x2[1, 2] = torch.randn(D)  # the last valid token of row 1 (not a constant shift: LayerNorm removes that)
        assert not torch.allclose(bi(x2, v)[1, 0], bi(x, v)[1, 0])
        x3 = x.clone()
        x3[1, 3:] = 1e3
        torch.testing.assert_close(bi(x3, v), bi(x, v), rtol=0, atol=ATOL)


def test_shared_directions_use_one_set_of_weights():
    shared = BiMambaStack(D, 1, share=True)
    separate = BiMambaStack(D, 1, share=False)
    assert shared.backward_stack is shared.forward_stack
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 2 * n(shared) == n(separate)


def test_interleave_pair_runs_one_bimamba_over_m1_t1_m2_t2_and_averages_text_over_branches():
    al = aligner("text", "audio", "vision")
    T = 4
    g = torch.Generator().manual_seed(3)
    seqs = {m: torch.randn(2, T, D, generator=g) for m in ("text", "audio", "vision")}
    valid = {m: torch.ones(2, T, dtype=torch.bool) for m in seqs}
    with torch.no_grad():
        out = al(seqs, valid)
        text_views = []
        for m in ("audio", "vision"):
            pair = torch.stack([seqs[m], seqs["text"]], 2).reshape(2, 2 * T, D)  # [m1, t1, m2, t2, ...]
            y = al.branches[m](pair, torch.ones(2, 2 * T, dtype=torch.bool))
            torch.testing.assert_close(out.seqs[m], y[:, 0::2], rtol=0, atol=ATOL)
            text_views.append(y[:, 1::2])
        torch.testing.assert_close(out.seqs["text"], 0.5 * (text_views[0] + text_views[1]), rtol=0, atol=ATOL)
    assert list(out.seqs) == list(seqs) and all(out.valid[m] is valid[m] for m in seqs) and out.aux == {}


def test_concat_pair_runs_one_bimamba_over_m_then_text():
    al = aligner("text", "audio", pair="concat")
    seqs, valid = text_audio()
    with torch.no_grad():
        out = al(seqs, valid)
        y = al.branches["audio"](torch.cat([seqs["audio"], seqs["text"]], 1), torch.ones(1, 8, dtype=torch.bool))
    torch.testing.assert_close(out.seqs["audio"], y[:, :5], rtol=0, atol=ATOL)
    torch.testing.assert_close(out.seqs["text"], y[:, 5:], rtol=0, atol=ATOL)


def test_shared_pair_runs_each_stream_alone_through_the_branch():
    al = aligner("text", "audio", pair="shared")
    seqs, valid = text_audio()
    with torch.no_grad():
        out = al(seqs, valid)
        torch.testing.assert_close(out.seqs["audio"], al.branches["audio"](seqs["audio"], valid["audio"]))
        torch.testing.assert_close(out.seqs["text"], al.branches["audio"](seqs["text"], valid["text"]))


@pytest.mark.parametrize("pair", ["interleave", "concat", "shared"])
def test_changing_padded_positions_changes_no_valid_output(pair):
    al = aligner("text", "audio", "vision", pair=pair)
    g = torch.Generator().manual_seed(4)
    valid = {"text": prefix([7, 2], 7), "audio": prefix([5, 1], 5), "vision": prefix([3, 6], 6)}
    seqs = {m: torch.randn(2, v.shape[1], D, generator=g) * v[..., None] for m, v in valid.items()}
    noisy = {m: torch.where(valid[m][..., None], x, torch.full_like(x, float("nan"))) for m, x in seqs.items()}
    with torch.no_grad():
        ref, new = al(seqs, valid), al(noisy, valid)
    for m in seqs:
        assert ref.seqs[m].shape == seqs[m].shape
        torch.testing.assert_close(new.seqs[m], ref.seqs[m], rtol=0, atol=ATOL)
        assert (ref.seqs[m][~valid[m]] == 0).all()


def test_anchor_param_chooses_the_centre_and_every_other_modality_gets_a_branch():
    al = aligner("text", "audio", "vision", anchor="audio")
    assert al.anchor == "audio" and sorted(al.branches) == ["text", "vision"]


def test_anchor_must_be_a_modality_with_at_least_one_partner():
    with pytest.raises(ValueError, match=r"anchor 'text' is not a modality of this pipeline \(\['audio', 'vision'\]\)"):
        aligner("audio", "vision")
    with pytest.raises(ValueError, match=r"only \['text'\]"):
        aligner("text")


def test_every_parameter_gets_a_gradient():
    al = aligner("text", "audio", "vision").train()
    seqs = {m: torch.randn(2, 3, D, requires_grad=True) for m in ("text", "audio", "vision")}
    out = al(seqs, {m: prefix([3, 2], 3) for m in seqs})
    sum(y.sum() for y in out.seqs.values()).backward()
    assert [n for n, p in al.named_parameters() if p.grad is None] == []
