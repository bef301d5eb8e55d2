"""In-memory multimodal datasets and index-slicing batch iteration.

All supported datasets fit in memory (MOSEI's 22k clips as float32 are a few GB at most), so a
split is a set of padded tensors and a batch is an index slice: no per-sample collation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor

from ..batch import Batch

SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    """One split as padded tensors.

    features[m] (N, T_m, d_m) float32; valid[m] (N, T_m) bool prefix masks (>= 1 valid token per
    row); missing[m] (N,) bool (modality absent for that row, e.g. text in ICT-MMMO's train split);
    labels (N,) float32 (regression) or int64 (classification); ids: optional row identifiers.
    """

    features: dict[str, Tensor]
    valid: dict[str, Tensor]
    missing: dict[str, Tensor]
    labels: Tensor
    ids: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, idx: Tensor) -> Batch:
        """The rows ``idx`` (long tensor) as a :class:`Batch`."""
        pick = lambda d: {m: v[idx] for m, v in d.items()}  # noqa: E731
        return Batch(features=pick(self.features), valid=pick(self.valid), labels=self.labels[idx],
                     missing=pick(self.missing), index=idx)


@dataclass
class DatasetInfo:
    """What the trainer and the metrics need to know about a dataset.

    task: "regression" or "classification"; num_classes: 0 for regression.
    metric_set: "mosi" (labels in [-3, 3], MMSA Acc-2/5/7), "sims" (labels in [-1, 1], Acc-2/3/5),
    "regression" (MAE, Corr only, e.g. ICT-MMMO's 1..5 scores) or "classification".
    """

    name: str
    task: str = "regression"
    num_classes: int = 0
    metric_set: str = "regression"
    dims: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)


class MultimodalData:
    """A dataset: ``splits`` (train/valid/test) and ``info``. Registered datasets subclass this
    and are built as ``Dataset(params, modalities=[...], seed=...)``."""

    splits: dict[str, Split]
    info: DatasetInfo

    def split(self, name: str) -> Split:
        return self.splits[name]

    def source_files(self) -> list[str]:
        """The files the dataset was read from (recorded with their sha256 in a run's provenance.json)."""
        return []

    def alignment_truth(self, split: str) -> dict[str, Tensor] | None:
        """The ground-truth alignment of ``split``, or None when the data does not know it (real data).

        Returns ``{m: (N, T_m) long}`` for every modality of the dataset: the index of the *segment*
        (a word, for sentiment clips) that position t of row n belongs to, or -1 (padding, or frames
        that belong to no segment, e.g. leading noise). Two positions of different modalities are
        truly aligned iff they carry the same segment index >= 0. Scored by :mod:`mmcore.alignment`.
        """
        return None


def iterate_batches(split: Split, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                    drop_last: bool = False, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
    """Yield batches of ``split`` by index slicing.

    With ``world_size > 1`` each rank gets a disjoint, equally sized share of the (shuffled)
    order, as ``DistributedSampler`` does (padding by repeating the first indices).
    """
    N = len(split)
    order = torch.randperm(N, generator=generator) if shuffle else torch.arange(N)
    if world_size > 1:
        per_rank = -(-N // world_size)
        total = per_rank * world_size
        if total > N:
            order = torch.cat([order, order[: total - N]])
        order = order[rank:total:world_size]
    n = len(order)
    stop = n - (n % batch_size) if drop_last else n
    for start in range(0, stop, batch_size):
        yield split.batch(order[start:start + batch_size])
