"""The synthetic dataset's mechanism-lab side: unchanged defaults, ground-truth alignment,
the misalignment knob, unequal lengths, and recoverability of a missing modality."""

from __future__ import annotations

import hashlib

import pytest
import torch
from pydantic import ValidationError

from mmcore.data.params import SyntheticParams
from mmcore.data.synthetic import SyntheticDataset

MODS = ["text", "audio", "vision"]
SPLITS = ("train", "valid", "test")
TINY = dict(n_train=48, n_valid=4, n_test=4)
RATES = {"text": 10, "audio": 75, "vision": 100}  # MOSI's 50 / 375 / 500 scaled down by 5
SHORT = {"text": 16, "audio": 6, "vision": 12}  # framed modalities with fewer frames than words


def make(**kw) -> SyntheticDataset:
    return SyntheticDataset(SyntheticParams(**{**TINY, **kw}), MODS, seed=0)


# --- defaults unchanged ------------------------------------------------------------------------
# Produced with the code of commit 30f131d (before the lab knobs existed), torch 2.13.0+cpu, AVX512,
# by SyntheticDataset(SyntheticParams(**case), MODS, seed=0) and the helpers below.
_INT_META = ("tokens", "polarity", "stress", "cue", "n_words", "align_audio", "offset_audio", "align_vision",
             "offset_vision")  # exactly valued: robust to last-bit float differences across CPUs
_FLOAT_META = ("weight", "score", "gamma_audio", "gamma_vision")
_CASES = {
    "default": (dict(), "a0b2b8f92059ddbe", "484ed1b0ada06b7a",
                {"train": [170454.003, 180540.194, 114702.154, -45.0512],
                 "test": [43334.22, 45894.765, 29339.081, 3.8214]}),
    "knobs": (dict(n_train=40, n_valid=8, n_test=8, max_shift=0.5, warp=1.0, lengths=RATES, data_seed=7),
              "3fbba3f5acb3e7c2", "47356ffd26d41c64",
              {"train": [9403.629, 22719.601, 29694.202, -6.2438], "test": [1614.423, 3886.356, 4693.9, 0.4161]}),
}
# new knobs at their neutral values, with non-default companions: must not change the draw
_NEUTRAL = dict(recoverable=0.0, recover_from="text", recover_modality="audio")


def _digest(ds: SyntheticDataset, exact: bool) -> str:
    h = hashlib.sha256()
    for s in SPLITS:
        sp, meta = ds.splits[s], ds.meta[s]
        ts = [sp.valid[m] for m in MODS] + [meta[k] for k in _INT_META]
        if exact:
            ts += [sp.features[m] for m in MODS] + [sp.labels] + [meta[k] for k in _FLOAT_META]
        for t in ts:
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _sums(ds: SyntheticDataset) -> dict[str, list[float]]:
    return {s: [float(ds.splits[s].features[m].double().abs().sum()) for m in MODS]
            + [float(ds.splits[s].labels.double().sum())] for s in ("train", "test")}


@pytest.mark.parametrize("case", sorted(_CASES))
@pytest.mark.parametrize("neutral", [False, True])
def test_draw_is_unchanged_by_the_lab_knobs(case, neutral):
    kw, int_digest, _, sums = _CASES[case]
    ds = SyntheticDataset(SyntheticParams(**kw, **(_NEUTRAL if neutral else {})), MODS, seed=0)
    assert _digest(ds, exact=False) == int_digest
    got = _sums(ds)
    for s in sums:
        assert got[s] == pytest.approx(sums[s], rel=1e-6, abs=1e-3), s


@pytest.mark.skipif(torch.__version__ != "2.13.0+cpu" or torch.backends.cpu.get_cpu_capability() != "AVX512",
                    reason="the bit-exact digest was recorded with torch 2.13.0+cpu on an AVX512 CPU")
@pytest.mark.parametrize("case", sorted(_CASES))
def test_draw_is_bit_identical_to_the_recorded_one(case):
    kw, _, exact_digest, _ = _CASES[case]
    assert _digest(SyntheticDataset(SyntheticParams(**kw, **_NEUTRAL), MODS, seed=0), exact=True) == exact_digest


# --- alignment truth ---------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [None, RATES, SHORT], ids=["default", "rates", "short"])
@pytest.mark.parametrize("a", [None, 0.0, 1.0])
def test_alignment_truth_is_the_generating_segmentation(lengths, a):
    kw = dict(noise=0.0, misalignment=a) | ({"lengths": lengths} if lengths else {})
    ds = make(**kw)
    for s in ("train", "test"):
        sp, meta, truth = ds.splits[s], ds.meta[s], ds.alignment_truth(s)
        n = meta["n_words"]
        assert set(truth) == set(MODS) and all(truth[m].dtype == torch.long for m in MODS)
        assert truth["text"].shape == sp.valid["text"].shape
        pos = torch.arange(truth["text"].shape[1])[None, :]
        assert torch.equal(truth["text"], torch.where(pos < n[:, None], pos, -1))
        for m in ("audio", "vision"):
            w, valid = truth[m], sp.valid[m]
            assert w.shape == valid.shape
            t = torch.arange(w.shape[1])[None, :]
            noise_or_pad = ~valid | (t < meta[f"offset_{m}"][:, None])
            assert torch.equal(w < 0, noise_or_pad), "-1 exactly on padding and leading-offset noise"
            assert (w < n[:, None]).all()
            assert (w[:, 1:] >= w[:, :-1])[valid[:, 1:]].all(), "monotone along valid frames"
            align = meta[f"align_{m}"]  # centre frame per word, -1 when the word has no frame
            rows, j = torch.nonzero(align >= 0, as_tuple=True)
            assert torch.equal(w[rows, align[rows, j]], j), "each word's centre frame carries that word"
            has_frame = torch.zeros_like(align, dtype=torch.bool)
            has_frame[torch.nonzero(w >= 0, as_tuple=True)[0], w[w >= 0]] = True
            assert torch.equal(has_frame, align >= 0), "a word has frames iff it has a centre frame"
            # with noise 0 each labelled frame is exactly s·W[k_j] + event_j·P of its word j
            k = meta["tokens"].gather(1, w.clamp(min=0))
            ev = meta["stress" if m == "audio" else "cue"].gather(1, w.clamp(min=0))
            P = ds.language["stress" if m == "audio" else "cue"]
            want = (ds.params.content_share * ds.language[f"{m}_code"][k] + ev[..., None] * P) * (w >= 0)[..., None]
            assert torch.allclose(sp.features[m], want, atol=1e-6)


def test_unequal_rates_give_the_scaled_frames_per_word():
    ds = make(lengths=RATES, misalignment=0.0, n_train=200)
    meta, sp, truth = ds.meta["train"], ds.splits["train"], ds.alignment_truth("train")
    n = meta["n_words"]
    for m, rate in (("audio", 7.5), ("vision", 10.0)):
        n_m = sp.valid[m].sum(1)
        assert torch.equal(n_m, torch.round(n * rate).long())
        counts = torch.stack([(truth[m] == j).sum(1) for j in range(RATES["text"])], 1)  # (N, T_t) frames per word
        words = torch.arange(RATES["text"])[None, :] < n[:, None]
        lo, hi = torch.floor(n_m / n), torch.ceil(n_m / n)
        assert ((counts >= lo[:, None]) & (counts <= hi[:, None]))[words].all(), "proportional: even spans"
        assert counts[words].float().mean() == pytest.approx(rate, abs=0.15)


def test_a_shorter_framed_modality_leaves_words_without_frames():
    ds = make(lengths=SHORT, n_train=64)
    meta, truth = ds.meta["train"], ds.alignment_truth("train")
    n_a = ds.splits["train"].valid["audio"].sum(1)
    assert (n_a < meta["n_words"]).all()
    framed = torch.stack([(truth["audio"] == j).any(1) for j in range(SHORT["text"])], 1)  # (N, T_t)
    assert torch.equal(framed, meta["align_audio"] >= 0)
    assert (framed.sum(1) < meta["n_words"]).all(), "fewer frames than words: some words get no frame"
    assert ((truth["audio"] >= 0) | ~ds.splits["train"].valid["audio"]).sum(1).ge(1).all()


# --- misalignment -------------------------------------------------------------------------------
def proportional_top1(ds: SyntheticDataset, m: str, split: str = "train") -> float:
    """Share of words whose proportional ("diagonal") top-1 frame ⌊(j + ½) n_m / n⌋ lies in their span."""
    n, truth, valid = ds.meta[split]["n_words"], ds.alignment_truth(split)[m], ds.splits[split].valid[m]
    j = torch.arange(ds.params.lengths["text"])[None, :]
    top = ((j + 0.5) * valid.sum(1, keepdim=True) / n[:, None]).long().clamp(max=valid.shape[1] - 1)
    words = j < n[:, None]
    return float(((truth.gather(1, top) == j) & words).sum() / words.sum())


@pytest.mark.parametrize("data_seed", [0, 5])
@pytest.mark.parametrize("lengths", [None, RATES], ids=["default", "rates"])
def test_misalignment_scales_from_proportional_to_strong(lengths, data_seed):
    kw = dict(data_seed=data_seed, n_train=96) | ({"lengths": lengths} if lengths else {})
    scores = [proportional_top1(make(misalignment=a, **kw), m) for a in (0.0, 0.5, 1.0) for m in ("audio", "vision")]
    assert scores[0] == scores[1] == 1.0, "a = 0: the diagonal is the truth"
    assert 0.3 < max(scores[2:4]) < 0.65 and max(scores[4:]) < 0.35 < min(scores[2:4]), scores
    ds = make(misalignment=0.0, **kw)
    for m in ("audio", "vision"):
        assert (ds.meta["train"][f"offset_{m}"] == 0).all() and (ds.meta["train"][f"gamma_{m}"] == 1).all()


def test_misalignment_moves_only_the_alignment():
    base, strong, mid = make(), make(misalignment=1.0), make(misalignment=0.5)
    for s in SPLITS:
        assert torch.equal(base.splits[s].labels, strong.splits[s].labels)
        assert torch.equal(base.splits[s].features["text"], strong.splits[s].features["text"])
        assert not torch.equal(base.meta[s]["segment_vision"], strong.meta[s]["segment_vision"])
        for m in MODS:  # a = 0.5 is exactly the default (max_shift, warp) = (0.25, 0.4)
            assert torch.equal(base.splits[s].features[m], mid.splits[s].features[m])


def test_misalignment_and_explicit_shift_or_warp_conflict():
    with pytest.raises(ValidationError, match=r"misalignment=0.3 sets max_shift = 0.15 and warp = 0.24; remove \['warp'\]"):
        SyntheticParams(misalignment=0.3, warp=0.4)
    # a saved spec lists every field: the values misalignment set re-validate
    saved = SyntheticParams(misalignment=0.3).model_dump()
    assert SyntheticParams(**saved) == SyntheticParams(misalignment=0.3)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        SyntheticParams(misalignment=1.5)
    assert SyntheticParams(misalignment=0.3).shift_and_warp() == pytest.approx((0.15, 0.24))
    assert SyntheticParams(max_shift=0.1, warp=0.2).shift_and_warp() == (0.1, 0.2)


# --- recoverability -------------------------------------------------------------------------------
def imputation_r2(ds: SyntheticDataset, src: str, vic: str) -> tuple[float, float]:
    """Least-squares map from the source's aligned frame to each victim frame (fit on the noisy frames).

    Returns (R² of the victim's clean content, squared corr of the imputed event read on P with the event).
    """
    sp, meta, truth = ds.splits["train"], ds.meta["train"], ds.alignment_truth("train")
    rows, t = torch.nonzero(truth[vic] >= 0, as_tuple=True)
    j = truth[vic][rows, t]
    if src == "text":
        xs = sp.features["text"][rows, j]
    else:
        a = meta[f"align_{src}"][rows, j]
        keep = a >= 0
        rows, t, j, a = rows[keep], t[keep], j[keep], a[keep]
        xs = sp.features[src][rows, a]
    event = "cue" if vic == "vision" else "stress"
    ev, P = meta[event][rows, j].double(), ds.language[event].double()
    clean = ds.params.content_share * ds.language[f"{vic}_code"][meta["tokens"][rows, j]].double() + ev[:, None] * P
    X = torch.cat([xs.double(), torch.ones(len(xs), 1, dtype=torch.float64)], 1)
    Y = sp.features[vic][rows, t].double()
    Yhat = X @ torch.linalg.lstsq(X, Y).solution
    r2 = 1 - ((Yhat - clean) ** 2).sum() / ((clean - clean.mean(0)) ** 2).sum()
    read = Yhat @ P / (P @ P)
    return float(r2), float(torch.corrcoef(torch.stack([read, ev]))[0, 1] ** 2)


@pytest.mark.parametrize("src,vic", [("audio", "vision"), ("text", "vision"), ("vision", "audio")])
def test_recoverable_makes_the_victim_a_function_of_the_source(src, vic):
    kw = dict(n_train=96, recover_from=src, recover_modality=vic)
    # content_share 0: the victim's clean content is its event alone
    r2 = [imputation_r2(make(recoverable=r, content_share=0.0, **kw), src, vic)[0] for r in (0.0, 0.5, 1.0)]
    assert abs(r2[0]) < 0.05 and 0.2 < r2[1] < 0.55 and r2[2] > 0.7, r2
    # default content_share: the word code is shared at every r; the event is what becomes recoverable
    ev = [imputation_r2(make(recoverable=r, data_seed=3, **kw), src, vic)[1] for r in (0.0, 0.5, 1.0)]
    assert ev[0] < 0.05 and 0.15 < ev[1] < 0.5 and ev[2] > 0.6, ev


def test_recoverable_changes_only_the_source_by_the_echo():
    base, rec = make(), make(recoverable=0.6)
    Q = rec.language["echo"]
    assert Q.shape == (base.params.dims["audio"],)
    assert Q.norm() == pytest.approx(float(rec.language["cue"].norm()), rel=1e-5)
    for s in SPLITS:
        b, r, meta = base.splits[s], rec.splits[s], rec.meta[s]
        assert torch.equal(b.labels, r.labels)
        for m in ("text", "vision"):
            assert torch.equal(b.features[m], r.features[m])
        h = meta["echo"]
        assert ((h == 0) | (meta["cue"] == 1)).all(), "the echo is a subset of the victim's events"
        w = rec.alignment_truth(s)["audio"]
        echo_frames = (h.gather(1, w.clamp(min=0)) * (w >= 0))[..., None] * Q  # (N, T_a, d_a)
        assert torch.allclose(r.features["audio"] - b.features["audio"], echo_frames, atol=1e-5)
    cues = torch.cat([rec.meta[s]["cue"].flatten() for s in SPLITS]) == 1
    echoed = torch.cat([rec.meta[s]["echo"].flatten() for s in SPLITS])[cues]
    assert 0.45 < float(echoed.mean()) < 0.75, "about r of the events are echoed"
    more = make(recoverable=0.9)
    assert (more.meta["train"]["echo"] >= rec.meta["train"]["echo"]).all(), "echoed events nest as r grows"


def test_recoverable_params_are_checked():
    with pytest.raises(ValidationError, match="a modality cannot echo itself"):
        SyntheticParams(recoverable=0.5, recover_from="vision")
    with pytest.raises(ValidationError, match=r"\['vision'\] missing \(add to dims/lengths or choose others\)"):
        SyntheticParams(recoverable=0.5, dims={"text": 8, "audio": 4}, lengths={"text": 4, "audio": 8})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        SyntheticParams(recoverable=1.5)
    SyntheticParams(dims={"text": 8}, lengths={"text": 4})  # r = 0: the recover_* defaults need no vision
