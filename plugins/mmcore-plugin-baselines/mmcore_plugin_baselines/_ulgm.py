r"""Self-MM's unimodal label generation module (ULGM): per-sample label and feature memories across epochs.

Why a private module: the state is the method's, not the network's — MMSA keeps it in its trainer
(``trains/multiTask/SELF_MM.py``: ``label_map``, ``feature_map``, ``center_map``); here it lives in the
``self_mm`` fuser as buffers, so checkpoints carry it and a resumed run continues with the same labels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_EPS = 1e-8  # MMSA's MIN in update_labels


class _Memory(nn.Module):
    """One task's memories: a generated label and the last feature of every training sample, and the centres.

    Shapes: label (N,), feature (N, d), center_pos (d,), center_neg (d,).
    """

    def __init__(self, d: int):
        super().__init__()
        self.register_buffer("label", torch.zeros(0))
        self.register_buffer("feature", torch.zeros(0, d))
        self.register_buffer("center_pos", torch.zeros(d))
        self.register_buffer("center_neg", torch.zeros(d))

    def resize(self, n: int) -> None:
        """Grow (zero-filled) or set the per-sample memories to ``n`` rows; existing rows are kept."""
        old = self.label.shape[0]
        keep = min(old, n)
        label = self.label.new_zeros(n)
        feature = self.feature.new_zeros(n, self.feature.shape[1])
        label[:keep], feature[:keep] = self.label[:keep], self.feature[:keep]
        self.label, self.feature = label, feature


class ULGM(nn.Module):
    r"""Self-MM's unimodal label generation and its weighted unimodal loss.

    For a training sample i seen for the n-th time (n = its epoch), with fusion label $y^f_i$ (the true label),
    fusion feature $F^f_i$ and modality feature $F^m_i$ (the first hidden layer of each head):

    $$d^s_{p} = \lVert F^s_i - C^s_p \rVert_2,\ d^s_{n} = \lVert F^s_i - C^s_n \rVert_2,\quad
    \delta_s = \frac{d^s_n - d^s_p}{d^s_p + \epsilon},\quad \alpha_m = \frac{\delta_m}{\delta_f + \epsilon}$$
    $$\hat y^m_i = \mathrm{clip}_{[-H, H]}\Big(\tfrac12 \alpha_m y^f_i + \tfrac12 (y^f_i + \delta_m - \delta_f)\Big),\qquad
    y^m_i \leftarrow \tfrac{n-1}{n+1} y^m_i + \tfrac{2}{n+1} \hat y^m_i \quad (n > 1)$$
    $$C^s_p = \overline{F^s_j}_{\,y^s_j > 0},\quad C^s_n = \overline{F^s_j}_{\,y^s_j < 0},\qquad
    \mathcal L_{uni} = \sum_m \frac1B \sum_{i} \tanh\lvert y^m_i - y^f_i \rvert\, \lvert \hat y^{(m)}_i - y^m_i \rvert$$

    $s \in \{f\} \cup$ modalities; $C$ are recomputed after every batch over the memories; $\epsilon = 10^{-8}$.
    Order per training batch (as MMSA's ``do_train``): first visit of a sample sets all its labels to $y^f_i$
    (MMSA's ``init_labels``, before training); the loss reads the labels before this batch's update; then the
    labels of samples in their second or later epoch are updated with the centres of the previous batch, the
    features are stored, and the centres recomputed.

    Reference: Yu et al., Self-MM, AAAI 2021, §3.3 (ULGM, Eqs. 4–11) and §3.4 (Eq. 12, the weighted loss);
    MMSA 2.2.1 ``trains/multiTask/SELF_MM.py`` (``init_labels``, ``weighted_loss``, ``update_labels``,
    ``update_features``, ``update_centers``).
    Notation: MMSA ``label_map[mode]`` / ``feature_map[mode]`` / ``center_map[mode]['pos'|'neg']`` =
    ``memories[mode].label`` / ``.feature`` / ``.center_pos|center_neg``, mode "fusion" or a modality; H =
    ``label_bound``; MMSA's epoch counter = ``seen`` (visits per sample; equal when every epoch visits every
    sample once, as mmcore's trainer does).
    Deviations: memories grow with the largest index seen instead of being allocated for the train-set size;
    centres average only samples seen so far (MMSA's also average the zero features of samples not yet seen —
    they differ only during the first epoch, in which no label update reads them); an empty positive or
    negative set gives a zero centre (MMSA: NaN).
    Shapes: features[s] (B, d_s), preds[m] (B,), labels (B,), index (B,) -> loss ().
    """

    def __init__(self, dims: dict[str, int], label_bound: float, exclude_zero: bool):
        super().__init__()
        self.modes = list(dims)  # "fusion" first, then the modalities
        self.memories = nn.ModuleDict({s: _Memory(d) for s, d in dims.items()})
        self.register_buffer("seen", torch.zeros(0, dtype=torch.long))
        self.label_bound, self.exclude_zero = label_bound, exclude_zero

    def resize(self, n: int) -> None:
        seen = self.seen.new_zeros(n)
        keep = min(n, self.seen.shape[0])
        seen[:keep] = self.seen[:keep]
        self.seen = seen
        for mem in self.memories.values():
            mem.resize(n)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint's memories have its run's size: take that size before the buffers are copied
        if prefix + "seen" in state_dict:
            self.resize(state_dict[prefix + "seen"].shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def _observe(self, index: Tensor, labels: Tensor) -> Tensor:
        """Count this visit; initialise the labels of first-seen samples. Returns each row's visit number n (B,)."""
        need = int(index.max()) + 1
        if need > self.seen.shape[0]:
            self.resize(need)
        n = self.seen[index] + 1
        self.seen[index] = n
        first = n == 1
        for mem in self.memories.values():
            mem.label[index[first]] = labels[first].to(mem.label.dtype)
        return n

    def loss(self, preds: dict[str, Tensor], index: Tensor) -> Tensor:
        """MMSA's ``weighted_loss`` summed over the modalities (the fusion term is the head's L1)."""
        y_f = self.memories["fusion"].label[index]  # (B,)
        total = None
        for m, pred in preds.items():
            y_m = self.memories[m].label[index]
            term = torch.mean(torch.tanh(torch.abs(y_m - y_f)) * torch.abs(pred.reshape(-1) - y_m))
            total = term if total is None else total + term
        return total

    @torch.no_grad()
    def _update_labels(self, features: dict[str, Tensor], index: Tensor, n: Tensor) -> None:
        fusion = self.memories["fusion"]
        d_fp = torch.norm(features["fusion"] - fusion.center_pos, dim=-1)  # (B,)
        d_fn = torch.norm(features["fusion"] - fusion.center_neg, dim=-1)
        delta_f = (d_fn - d_fp) / (d_fp + _EPS)
        y_f = fusion.label[index]
        n = n.to(y_f.dtype)
        for m in self.modes[1:]:
            mem = self.memories[m]
            d_sp = torch.norm(features[m] - mem.center_pos, dim=-1)
            d_sn = torch.norm(features[m] - mem.center_neg, dim=-1)
            delta_s = (d_sn - d_sp) / (d_sp + _EPS)
            alpha = delta_s / (delta_f + _EPS)
            new = 0.5 * alpha * y_f + 0.5 * (y_f + delta_s - delta_f)
            new = torch.clamp(new, min=-self.label_bound, max=self.label_bound)
            mem.label[index] = (n - 1) / (n + 1) * mem.label[index] + 2 / (n + 1) * new

    @torch.no_grad()
    def _update_centers(self) -> None:
        seen = self.seen > 0
        for mem in self.memories.values():
            pos = seen & ((mem.label > 0) if self.exclude_zero else (mem.label >= 0))
            neg = seen & (mem.label < 0)
            for mask, name in ((pos, "center_pos"), (neg, "center_neg")):
                centre = mem.feature[mask].mean(dim=0) if mask.any() else torch.zeros_like(getattr(mem, name))
                setattr(mem, name, centre)

    def step(self, features: dict[str, Tensor], preds: dict[str, Tensor], labels: Tensor, index: Tensor) -> Tensor:
        """One training batch: the weighted unimodal loss, then MMSA's label, feature and centre updates.

        ``features``: {"fusion": (B, d_f), m: (B, d_m)} (detached here); ``preds``: {m: (B,)} unimodal predictions.
        """
        index = index.long().to(self.seen.device)
        n = self._observe(index, labels)
        loss = self.loss(preds, index)
        features = {s: f.detach() for s, f in features.items()}
        later = n > 1
        if later.any():
            self._update_labels({s: f[later] for s, f in features.items()}, index[later], n[later])
        for s, f in features.items():
            self.memories[s].feature[index] = f.to(self.memories[s].feature.dtype)
        self._update_centers()
        return loss
