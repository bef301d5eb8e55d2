r"""A synthetic multimodal sentiment dataset with cross-modal, time-ordered, misaligned structure.

Generative story (per clip; the "language" E, W_a, W_v, P_a, P_v is drawn once per seed):
a clip has :math:`n` words (:math:`n` uniform in [⌈min_length_frac·T_t⌉, T_t]). Word j has a type
:math:`k_j` from a vocabulary of 12 with polarity :math:`p_j \in \{-1, 0, +1\}`
(:math:`P(p_j = \pm 1)` = polar_prob / 2), an audio stress :math:`e_j \sim \mathrm{Bern}`(stress_prob)
and a visual sarcasm cue :math:`c_j \sim \mathrm{Bern}`(cue_prob). The score is

$$y = \mathrm{clip}\Big(\frac{1.5}{Z}\sum_{j<n} w_j\, p_j\,(1 + e_j)\,(1 - 2c_j) + \sigma_y\epsilon,\ -3,\ 3\Big),
\qquad w_j = \frac14 + \frac34\,\frac{j+1}{n},\quad Z = \sqrt{\textstyle\sum_j w_j^2\ \mathrm{polar\_prob}\,(1 + 3\,\mathrm{stress\_prob})}$$

so a word's sentiment counts double when stressed in audio, flips when the face shows a cue at
that word, and later words weigh more (order matters; a clip without polar words scores exactly 0).
Text token j is :math:`E_{k_j} + \sigma\xi`. Audio/vision have :math:`n_m \approx n\,T_m/T_t` frames;
word j occupies frames :math:`[b_j, b_{j+1})` with :math:`b_j = o_m + j + \lfloor (n_m - o_m - n)
(j/n)^{\gamma_m} \rfloor`, a per-clip leading offset :math:`o_m \le` max_shift·n_m and warp
:math:`\gamma_m = e^{\mathrm{warp}\,z}` (frames before :math:`o_m` hold noise only). An audio frame
of word j is :math:`s\,W_{a,k_j} + e_j P_a + \sigma\xi` and a vision frame :math:`s\,W_{v,k_j} + c_j P_v
+ \sigma\xi` (s = content_share: a word-identity code an aligner can match across modalities).
No single modality determines y: text lacks stress and cue, audio lacks cues, vision lacks
stress; and the stress/cue must be read at the frames aligned to the polar word. The alignment
(centre frame of each word per modality) is recorded in ``meta[split]["align_<m>"]``, the word of
every frame (-1: padding or offset noise) in ``meta[split]["segment_<m>"]``
(:meth:`SyntheticDataset.alignment_truth`). Any lengths work: with fewer frames than words
(:math:`n_m - o_m < n`) the boundaries drop the ``j`` term, several words share a boundary and a
word with an empty span has no frame (its ``align`` is -1).

Mechanism-lab knobs (defaults leave the draw unchanged):

* misalignment :math:`a \in [0, 1]` sets (max_shift, warp) = :math:`(a/2,\ 0.8a)`: :math:`a = 0`
  gives :math:`o_m = 0,\ \gamma_m = 1` (proportional alignment), :math:`a = 0.5` the defaults
  (0.25, 0.4), :math:`a = 1` an offset of up to half the frames and :math:`\gamma_m \in
  [e^{-1.6}, e^{1.6}]` at ±2σ. Only the alignment changes with a (same latents, labels, noise).
* recoverable :math:`r \in [0, 1]` makes the victim v = recover_modality (vision by default)
  recoverable from the source s = recover_from (audio): with the victim's event
  :math:`\varepsilon_j` (:math:`c_j` for vision, :math:`e_j` for audio) and :math:`u_j \sim U(0, 1)`,

  $$h_j = \varepsilon_j\,[u_j < r],\qquad x^s_t \mathrel{+}= h_{w(t)}\,Q_s,\quad \lVert Q_s\rVert = \lVert P_v\rVert$$

  on every frame (token) t of word w(t) in s, Q_s a fixed random direction (P_v: the victim's
  event pattern, P_v or P_a above). y and the other modalities do not change. At r = 1 the
  victim's frames (word code + :math:`\varepsilon_j P_v`) are a linear function of the source's
  aligned frames up to noise (the word codes are shared content at every r); at r = 0 its event is
  independent of the other modalities. The best predictor of :math:`\varepsilon_j` from :math:`h_j`
  explains :math:`R^2 = r(1-q)/(1-qr)` of its variance (q = the event probability). The echo is the
  event alone, at the victim's norm and time: no polarity, no product :math:`p_j c_j`, so the
  source does not hold the label in an easier form than the victim does.

Shapes: features[m] (N, T_m, d_m) float32, valid prefixes; labels (N,) float32 or int64.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from torch import Tensor

from ..errors import DataError
from .base import SPLITS, DatasetInfo, MultimodalData, Split
from .params import SyntheticParams

__all__ = ["SyntheticDataset", "VOCAB_POLARITY"]

logger = logging.getLogger(__name__)

#: polarity of each of the 12 word types: 4 positive, 4 negative, 4 neutral
VOCAB_POLARITY = torch.tensor([1.0] * 4 + [-1.0] * 4 + [0.0] * 4)
_FRAMED = ("audio", "vision")
_EVENT = {"audio": "stress", "vision": "cue"}


def _seed(base: int, k: int) -> int:
    return (base * 1_000_003 + k) % (2**63)


class SyntheticDataset(MultimodalData):
    """Built-in synthetic dataset (see the module docstring for the generative story).

    Args: params — :class:`SyntheticParams`; modalities — subset of ``params.dims``; seed — the
    pipeline seed, deliberately unused: the draw depends on ``params.data_seed`` only, so seeds of
    a sweep vary the model, not the data.
    Attributes: ``meta[split]`` latent variables and alignment (``align_<m>``, ``segment_<m>``,
    ``echo`` when recoverable > 0); ``language`` the fixed codes (``echo``: Q_s).
    Raises: DataError if a requested modality is not generated by these params.
    """

    def __init__(self, params: SyntheticParams, modalities: list[str], seed: int):
        if not isinstance(params, SyntheticParams):
            params = SyntheticParams.model_validate(params)
        unknown = [m for m in modalities if m not in params.dims]
        if unknown or not modalities:
            raise DataError(f"synthetic dataset: modalities {unknown or modalities} are not available; "
                            f"available modalities: {sorted(params.dims)} (set data.params.dims/lengths to add one)")
        self.params, self.modalities = params, list(modalities)
        t0 = time.perf_counter()
        base = params.data_seed
        g = torch.Generator().manual_seed(_seed(base, 0))
        V = len(VOCAB_POLARITY)
        self.language = {"text": torch.randn(V, params.dims["text"], generator=g)}
        for m in _FRAMED:
            if m in params.dims:
                d = params.dims[m]
                self.language[f"{m}_code"] = torch.randn(V, d, generator=g)
                self.language[_EVENT[m]] = torch.randn(d, generator=g)
        if params.recoverable > 0:  # own generator: r > 0 leaves every other draw unchanged
            q = torch.randn(params.dims[params.recover_from], generator=torch.Generator().manual_seed(_seed(base, 100)))
            self.language["echo"] = q * (self.language[_EVENT[params.recover_modality]].norm() / q.norm())
        sizes = {"train": params.n_train, "valid": params.n_valid, "test": params.n_test}
        self.meta: dict[str, dict[str, Tensor]] = {}
        self.splits = {}
        for i, s in enumerate(SPLITS):
            gs = torch.Generator().manual_seed(_seed(base, i + 1))
            ge = torch.Generator().manual_seed(_seed(base, 101 + i))  # echo draws (recoverable > 0 only)
            self.splits[s], self.meta[s] = self._make_split(sizes[s], gs, ge)
        task = params.task
        num_classes = 0
        if task == "classification":
            num_classes = params.num_classes
            q = torch.arange(1, num_classes, dtype=torch.float32) / num_classes
            thr = torch.quantile(self.splits["train"].labels, q)
            for s in SPLITS:
                sp = self.splits[s]
                sp.labels = (sp.labels[:, None] > thr[None, :]).sum(1).to(torch.int64)
        self.info = DatasetInfo(name="synthetic", task=task, num_classes=num_classes,
                                metric_set="mosi" if task == "regression" else "classification",
                                dims={m: params.dims[m] for m in self.modalities},
                                lengths={m: params.lengths[m] for m in self.modalities})
        logger.info("synthetic dataset: %s samples, modalities %s, built in %.2fs",
                    sizes, self.modalities, time.perf_counter() - t0)

    def alignment_truth(self, split: str) -> dict[str, Tensor]:
        """Word index of every position, ``{m: (N, T_m) long}`` for each modality of the dataset.

        text: j at word j < n, -1 on padding; audio/vision: the word j whose span [b_j, b_{j+1})
        holds frame t, -1 on padding and on the leading-offset noise frames t < o_m.
        """
        meta, out = self.meta[split], {}
        for m in self.modalities:
            if m == "text":
                pos = torch.arange(self.params.lengths["text"])
                out[m] = torch.where(pos[None, :] < meta["n_words"][:, None], pos[None, :], -1)  # (N, T_t)
            else:
                out[m] = meta[f"segment_{m}"].clone()  # (N, T_m)
        return out

    def _make_split(self, N: int, g: torch.Generator, ge: torch.Generator) -> tuple[Split, dict[str, Tensor]]:
        p = self.params
        T_t = p.lengths["text"]
        lo = max(1, math.ceil(p.min_length_frac * T_t))
        n = torch.randint(lo, T_t + 1, (N,), generator=g)  # words per clip
        pos = torch.arange(T_t)
        word_valid = pos[None, :] < n[:, None]  # (N, T_t)
        # latent word variables
        r = torch.rand(N, T_t, generator=g)
        polarity = torch.where(r < p.polar_prob / 2, 1.0, torch.where(r < p.polar_prob, -1.0, 0.0))
        kind = torch.randint(0, 4, (N, T_t), generator=g)
        tokens = torch.where(polarity > 0, kind, torch.where(polarity < 0, kind + 4, kind + 8))
        stress = (torch.rand(N, T_t, generator=g) < p.stress_prob).float()
        cue = (torch.rand(N, T_t, generator=g) < p.cue_prob).float()
        polarity, stress, cue = polarity * word_valid, stress * word_valid, cue * word_valid
        tokens = torch.where(word_valid, tokens, torch.full_like(tokens, -1))
        weight = (0.25 + 0.75 * (pos[None, :] + 1).float() / n[:, None].float()) * word_valid  # recency ramp w_j
        Z = torch.sqrt((weight**2).sum(1) * p.polar_prob * (1 + 3 * p.stress_prob))
        score = 1.5 * (weight * polarity * (1 + stress) * (1 - 2 * cue)).sum(1) / Z
        if p.label_noise > 0:
            score = score + p.label_noise * torch.randn(N, generator=g)
        score = score.clamp(-3.0, 3.0)
        meta = {"tokens": tokens, "polarity": polarity, "stress": stress, "cue": cue, "weight": weight,
                "n_words": n, "score": score.clone()}
        echo = None  # (N, T_t) h_j = event_j · [u_j < r] of the victim, carried by recover_from
        if p.recoverable > 0:
            echo = meta[_EVENT[p.recover_modality]] * (torch.rand(N, T_t, generator=ge) < p.recoverable)
            meta["echo"] = echo
        features, valid = {}, {}
        tok = tokens.clamp(min=0)
        for m in _FRAMED:  # draw alignments for every framed modality so other modalities do not shift
            if m not in p.dims:
                continue
            frames, align, extra = self._frames(m, n, tok, stress if m == "audio" else cue, g,
                                                echo if m == p.recover_from else None)
            meta[f"align_{m}"], meta[f"offset_{m}"], meta[f"gamma_{m}"] = align, extra[0], extra[1]
            meta[f"segment_{m}"] = extra[2]
            if m in self.modalities:
                features[m], valid[m] = frames
        if "text" in self.modalities:
            x = torch.randn(N, T_t, p.dims["text"], generator=g).mul_(p.noise)
            x.add_(self.language["text"][tok])
            if echo is not None and p.recover_from == "text":
                x.add_(echo[..., None] * self.language["echo"])
            x.mul_(word_valid[..., None])  # (N, T_t, d_t)
            features["text"], valid["text"] = x, word_valid
        features = {m: features[m] for m in self.modalities}
        valid = {m: valid[m] for m in self.modalities}
        missing = {m: torch.zeros(N, dtype=torch.bool) for m in self.modalities}
        split = Split(features=features, valid=valid, missing=missing, labels=score.float())
        return split, meta

    def _frames(self, m: str, n: Tensor, tok: Tensor, event: Tensor, g: torch.Generator, echo: Tensor | None):
        """Frames of modality m and the word→frame alignment.

        Shapes: n (N,), tok/event/echo (N, T_t) -> ((features (N, T_m, d_m), valid (N, T_m)),
        align (N, T_t) centre frame per word or -1, (offset (N,), gamma (N,), segment (N, T_m) word per
        frame or -1)). With fewer frames than words (step = 0) words may share a boundary: a word with
        an empty span has no frame and align -1; every frame still belongs to exactly one word.
        """
        p = self.params
        T_t, T_m, d = p.lengths["text"], p.lengths[m], p.dims[m]
        N = n.shape[0]
        max_shift, warp = p.shift_and_warp()
        n_m = torch.clamp(torch.round(n.float() * T_m / T_t), 1, T_m).long()  # (N,)
        offset = torch.floor(torch.rand(N, generator=g) * max_shift * n_m.float()).long()
        offset = torch.minimum(offset, n_m - 1)
        gamma = torch.exp(warp * torch.randn(N, generator=g))
        span = n_m - offset  # frames that carry words
        step = (span >= n).long()  # 1: every word gets >= 1 frame
        j = torch.arange(T_t + 1)
        u = (j[None, :].float() / n[:, None].float()).clamp(max=1.0) ** gamma[:, None]  # (N, T_t + 1)
        b = offset[:, None] + j[None, :] * step[:, None] + torch.floor((span - n * step)[:, None].float() * u).long()
        b = torch.where(j[None, :] <= n[:, None], b, torch.full_like(b, 1 << 40))  # (N, T_t + 1) boundaries
        t = torch.arange(T_m)
        word = torch.searchsorted(b, t[None, :].expand(N, T_m).contiguous(), right=True) - 1  # (N, T_m)
        valid = t[None, :] < n_m[:, None]
        has_word = valid & (word >= 0) & (word < n[:, None])
        w = word.clamp(0, T_t - 1)
        k = torch.gather(tok, 1, w)  # (N, T_m) word type at each frame
        ev = torch.gather(event, 1, w) * has_word  # (N, T_m)
        x = torch.randn(N, T_m, d, generator=g).mul_(p.noise)  # in place: MOSI-sized tensors are large
        x.add_(self.language[f"{m}_code"][k].mul_((p.content_share * has_word)[..., None]))
        x.add_(ev[..., None] * self.language[_EVENT[m]][None, None, :])
        if echo is not None:
            x.add_((torch.gather(echo, 1, w) * has_word)[..., None] * self.language["echo"])
        x.mul_(valid[..., None])
        centre = torch.div(b[:, :-1] + b[:, 1:] - 1, 2, rounding_mode="floor")
        nonempty = b[:, 1:] > b[:, :-1]
        align = torch.where((j[None, :-1] < n[:, None]) & nonempty, centre, torch.full_like(centre, -1))
        segment = torch.where(has_word, word, torch.full_like(word, -1))
        return (x, valid), align, (offset, gamma, segment)
