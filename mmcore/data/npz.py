r"""Datasets stored as ``.npz``: ``{split}_{modality}`` (N, T, d) and ``{split}_{labels}`` (N,).

The layout of ICT-MMMO as ``mmcore data fetch mmmo`` converts it (CMU Multimodal SDK features, word-aligned):
modalities share the time axis (one step per word) and zero rows are padding, mostly at the front
and not always at one end. mmcore wants valid tokens as a prefix, so each sample is
**left-justified by one shift for all modalities**: its span runs from the first to the last step
where any modality is non-zero; every modality is shifted by the span's start (word alignment is
kept) and all-zero steps inside the span stay real tokens. ``valid`` is that span for every
modality. A modality absent from a split (ICT-MMMO's train text is not among the checksummed release
files) is zeros of the size the other splits give, with ``missing`` all True.

Standardisation (``standardize: true``): per feature,
$$x' = (x - \mu_{train}) / \max(\sigma_{train}, 10^{-6})$$
with μ, σ over the valid tokens of present train rows, applied to valid tokens only (padding
stays 0). A modality absent from train is left as is (no eval statistics are used).

The helpers here (path resolution, finiteness checks, standardisation) are shared with
:mod:`mmcore.data.mmsa`.
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .base import SPLITS, DatasetInfo, MultimodalData, Split
from .params import NpzParams

__all__ = ["NpzDataset", "resolve_path", "check_finite", "standardize_splits", "natural_missing", "log_missing"]

logger = logging.getLogger(__name__)

_STD_FLOOR = 1e-6  # constant features (e.g. an always-zero column) are only centred


def resolve_path(path: str, what: str) -> Path:
    """``path`` relative to the working directory, or DataError naming it and what to do."""
    p = Path(path).expanduser()
    full = p if p.is_absolute() else Path.cwd() / p
    if not full.is_file():
        raise DataError(f"{path}: {what} file not found (looked at {full.resolve()}); set data.params.path to an "
                        f"existing file (relative paths start at the current directory {Path.cwd()})")
    if not os.access(full, os.R_OK):
        raise DataError(f"{path}: {what} file is not readable; check its permissions")
    return full


def check_finite(x: np.ndarray, *, file: str, split: str, modality: str, policy: str) -> np.ndarray:
    """``x`` unchanged if finite; else DataError (policy "error") or non-finite -> 0, logged ("zero")."""
    if not np.issubdtype(x.dtype, np.floating):
        return x
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count == 0:
        return x
    kinds = ", ".join(f"{k} {n}" for k, n in (("NaN", int(np.isnan(x).sum())), ("+inf", int(np.isposinf(x).sum())),
                                               ("-inf", int(np.isneginf(x).sum()))) if n)
    if policy != "zero":
        raise DataError(f"{file}: split {split!r}, modality {modality!r}: {count} non-finite values ({kinds}); "
                        f"set data.params.nan_policy: zero to replace them by 0")
    logger.warning("%s: split %r, modality %r: replaced %d non-finite values (%s) by 0 (nan_policy: zero)",
                   file, split, modality, count, kinds)
    x = x.copy()
    x[bad] = 0
    return x


def natural_missing(x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Rows whose modality holds no data: every feature zero, or a stored length of 0. (N, T, d) -> (N,) bool."""
    empty = ~np.any(x != 0, axis=(1, 2))
    if lengths is not None:
        empty = empty | (np.asarray(lengths).reshape(-1) <= 0)
    return empty


def log_missing(source: str, split: str, counts: dict[str, tuple[int, int]]) -> None:
    """One log line per split: how many rows of each modality hold no data and are marked missing."""
    parts = [f"{m} {k}/{n}" for m, (k, n) in counts.items() if k]
    if parts:
        logger.info("%s: split %r: rows with an empty modality marked missing (natural missingness): %s "
                    "(data.params.natural_missing: false keeps them as zeros)", source, split, ", ".join(parts))


def standardize_splits(splits: dict[str, Split], modalities: list[str], source: str) -> dict[str, tuple[Tensor, Tensor]]:
    """Standardise valid tokens of every split in place with train statistics; returns {m: (mean, std)}."""
    stats = {}
    train = splits["train"]
    for m in modalities:
        sel = train.valid[m] & ~train.missing[m][:, None]  # (N, T) tokens that carry data
        if not sel.any():
            logger.info("%s: modality %r absent from the train split; left unstandardised", source, m)
            continue
        tok = train.features[m][sel].double()  # (n_tokens, d)
        mean, std = tok.mean(0), tok.std(0, unbiased=False).clamp(min=_STD_FLOOR)
        stats[m] = (mean.float(), std.float())
        for sp in splits.values():
            use = (sp.valid[m] & ~sp.missing[m][:, None])[..., None]  # (N, T, 1)
            x = (sp.features[m] - stats[m][0]) / stats[m][1]
            sp.features[m] = torch.where(use, x, torch.zeros_like(x))
    if stats:
        logger.info("%s: standardised %s with train statistics over valid tokens", source, sorted(stats))
    return stats


def left_justify(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Shift each row so its span (first..last step with any non-zero modality) starts at 0.

    Shapes: arrays[m] (N, T, d_m) sharing T -> (shifted arrays, lengths (N,), rows with no data).
    A row with no non-zero step gets length 1 (one all-zero token), keeping >= 1 valid token.
    """
    nonzero = np.stack([np.any(a != 0, axis=2) for a in arrays.values()]).any(0)  # (N, T)
    N, T = nonzero.shape
    empty = ~nonzero.any(1)
    first = np.argmax(nonzero, axis=1)
    last = T - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    lengths = np.where(empty, 1, last - first + 1)
    first = np.where(empty, 0, first)
    idx = np.minimum(first[:, None] + np.arange(T)[None, :], T - 1)  # (N, T)
    keep = (np.arange(T)[None, :] < lengths[:, None])[..., None]
    out = {m: np.where(keep, np.take_along_axis(a, idx[..., None], axis=1), 0).astype(np.float32)
           for m, a in arrays.items()}
    return out, lengths, int(empty.sum())


class NpzDataset(MultimodalData):
    """An ``.npz`` dataset (see the module docstring). Built as ``NpzDataset(params, modalities, seed)``.

    Raises: DataError for a missing/corrupt file, a missing labels key, wrong ranks or sizes,
    non-finite values (nan_policy: error) or a requested modality that no split has.
    """

    def source_files(self) -> list[str]:
        return [self.src]

    def __init__(self, params: NpzParams, modalities: list[str], seed: int):
        if not isinstance(params, NpzParams):
            params = NpzParams.model_validate(params)
        self.params, self.modalities = params, list(modalities)
        if params.dataset is not None:  # a catalogue name: the converted file in the data cache
            from .cache import resolve_dataset

            path = resolve_dataset(params.dataset)
            src = str(path)
            logger.info("dataset %r: %s", params.dataset, src)
        else:
            path = resolve_path(params.path, "npz")
            src = params.path
        self.src = src
        arrays = self._read(path, src)
        if params.label_column is not None:
            arrays = self._pick_label_column(arrays, src)
        prefixes = {s: params.splits[s] for s in SPLITS}
        for s, pre in prefixes.items():
            if f"{pre}_labels" not in arrays:
                raise DataError(f"{src}: no labels for split {s!r}: key '{pre}_labels' is missing; keys in the file: "
                                f"{sorted(arrays)} (set data.params.splits if the split has another name)")
        available = sorted({k[len(pre) + 1:] for pre in prefixes.values() for k in arrays
                            if k.startswith(pre + "_") and k != f"{pre}_labels"})
        unknown = [m for m in self.modalities if m not in available]
        if unknown or not self.modalities:
            raise DataError(f"{src}: modalities {unknown or self.modalities} are not in the file; "
                            f"available modalities: {available}")
        dims, lengths = self._shapes(arrays, prefixes, available, src)
        self.task, self.num_classes = self._task(arrays, prefixes, src)
        self.splits = {s: self._split(arrays, s, pre, available, dims, lengths, src) for s, pre in prefixes.items()}
        self.stats = standardize_splits(self.splits, self.modalities, src) if params.standardize else {}
        classification = self.task == "classification"
        self.info = DatasetInfo(name=Path(src).stem, task=self.task, num_classes=self.num_classes,
                                metric_set="classification" if classification else "regression",
                                dims={m: dims[m] for m in self.modalities}, lengths={m: lengths for m in self.modalities})
        logger.info("%s: loaded %s rows, modalities %s", src, {s: len(sp) for s, sp in self.splits.items()},
                    self.modalities)

    @staticmethod
    def _read(path: Path, src: str) -> dict[str, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: np.asarray(z[k]) for k in z.files}
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError) as e:
            raise DataError(f"{src}: cannot read as .npz ({type(e).__name__}: {e}); the file is corrupt or not an "
                            f"npz archive: re-create it with numpy.savez") from e

    def _pick_label_column(self, arrays: dict[str, np.ndarray], src: str) -> dict[str, np.ndarray]:
        """``{split}_labels`` (N, K) -> column ``label_column`` (N,) in every split (params.label_column)."""
        c, k = self.params.label_column, 0
        for s in SPLITS:
            key = f"{self.params.splits[s]}_labels"
            y = arrays.get(key)
            if y is None:
                continue  # reported with the file's keys below
            if y.ndim != 2 or not c < y.shape[1]:
                raise DataError(f"{src}: data.params.label_column: {c} needs (N, K) labels with K > {c}; "
                                f"'{key}' has shape {y.shape} (remove label_column for (N,) labels)")
            k = y.shape[1]
            arrays[key] = y[:, c]
        logger.info("%s: labels: column %d of %d (data.params.label_column)", src, c, k)
        return arrays

    def _task(self, arrays, prefixes, src) -> tuple[str, int]:
        """The task (params.task, or inferred from the train labels) and the number of classes."""
        from .params import label_task

        ys = {s: arrays[f"{pre}_labels"] for s, pre in prefixes.items()}
        task = self.params.task if self.params.task != "auto" else label_task(ys["train"])
        if task == "regression":
            logger.info("%s: task regression (%s)", src, "float labels" if self.params.task == "auto" else "task param")
            return task, 0
        counts = set()
        for s, y in ys.items():
            if y.ndim == 2 and y.shape[1] > 1:
                counts.add(y.shape[1])
            else:
                flat = y.reshape(-1)
                if not np.all(np.isfinite(flat)) or np.any(flat < 0) or np.any(flat != np.round(flat)):
                    raise DataError(f"{src}: '{prefixes[s]}_labels' must hold class ids 0..C-1 for classification; "
                                    f"got values in [{flat.min()}, {flat.max()}] (set data.params.task: regression "
                                    "for scores)")
                counts.add(int(flat.max()) + 1 if flat.size else 0)
        num = max(counts)
        if num < 2:
            raise DataError(f"{src}: classification needs at least 2 classes; the labels have {num} (set "
                            "data.params.task: regression, or check the labels)")
        how = "task param" if self.params.task != "auto" else "integer or one-hot labels"
        logger.info("%s: task classification with %d classes (%s)", src, num, how)
        return task, num

    def _shapes(self, arrays, prefixes, available, src) -> tuple[dict[str, int], int]:
        dims: dict[str, int] = {}
        T = None
        for s, pre in prefixes.items():
            y = arrays[f"{pre}_labels"]
            onehot = y.ndim == 2 and y.shape[1] > 1 and self.params.task != "regression"
            if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1) and not onehot:
                raise DataError(f"{src}: '{pre}_labels' must be (N,) (or one-hot (N, C) for classification); got "
                                f"shape {y.shape} (for (N, K) label columns, such as POM's traits, choose one "
                                "with data.params.label_column)")
            for m in available:
                a = arrays.get(f"{pre}_{m}")
                if a is None:
                    continue
                if a.ndim != 3:
                    raise DataError(f"{src}: '{pre}_{m}' must be (N, T, d) (rank 3); got shape {a.shape}")
                if a.shape[0] != y.shape[0]:
                    raise DataError(f"{src}: split {s!r}: '{pre}_{m}' has {a.shape[0]} rows but '{pre}_labels' "
                                    f"has {y.shape[0]}")
                if dims.setdefault(m, a.shape[2]) != a.shape[2]:
                    raise DataError(f"{src}: modality {m!r} has d={a.shape[2]} in '{pre}_{m}' but d={dims[m]} "
                                    f"elsewhere; every split needs the same feature size")
                if T is None:
                    T = a.shape[1]
                elif a.shape[1] != T:
                    raise DataError(f"{src}: '{pre}_{m}' has T={a.shape[1]} but other arrays have T={T}; npz "
                                    f"modalities must share the (word-aligned) time axis")
        return dims, int(T)

    def _labels(self, raw: np.ndarray, pre: str, src: str) -> Tensor:
        """Labels as float32 scores (regression) or int64 class ids (classification; one-hot -> ids)."""
        if self.task == "classification":
            if raw.ndim == 2 and raw.shape[1] > 1:
                if not (np.all((raw == 0) | (raw == 1)) and np.all(raw.sum(1) == 1)):
                    raise DataError(f"{src}: '{pre}_labels' is (N, C) but not one-hot (each row must hold one 1 "
                                    "and zeros)")
                return torch.from_numpy(raw.argmax(1).astype(np.int64))
            return torch.from_numpy(raw.reshape(-1).astype(np.int64))
        y = raw.reshape(-1).astype(np.float64)
        if not np.all(np.isfinite(y)):
            raise DataError(f"{src}: '{pre}_labels' holds {int((~np.isfinite(y)).sum())} non-finite labels; "
                            f"fix or drop those rows (labels are never zero-filled)")
        y = (y + self.params.label_offset) * self.params.label_scale
        return torch.from_numpy(y.astype(np.float32))

    def _split(self, arrays, s, pre, available, dims, T, src) -> Split:
        labels = self._labels(arrays[f"{pre}_labels"], pre, src)
        present = {m: check_finite(arrays[f"{pre}_{m}"], file=src, split=s, modality=m, policy=self.params.nan_policy)
                   for m in available if f"{pre}_{m}" in arrays}
        N = labels.shape[0]
        if present:
            shifted, lengths, empty = left_justify(present)
            if empty:
                logger.warning("%s: split %r: %d rows have no non-zero step in any modality; each keeps one "
                               "all-zero token", src, s, empty)
        else:
            shifted, lengths = {}, np.ones(N, dtype=np.int64)
            logger.warning("%s: split %r has no modality at all; every row is missing", src, s)
        valid = torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]  # (N, T)
        feats, val, miss, empty = {}, {}, {}, {}
        for m in self.modalities:
            if m in shifted:
                gone = natural_missing(present[m]) if self.params.natural_missing else np.zeros(N, dtype=bool)
                empty[m] = (int(gone.sum()), N)
                feats[m], miss[m] = torch.from_numpy(shifted[m]), torch.from_numpy(gone)
            else:
                logger.info("%s: modality %r absent from split %r: all %d rows marked missing", src, m, s, N)
                feats[m], miss[m] = torch.zeros(N, T, dims[m]), torch.ones(N, dtype=torch.bool)
            val[m] = valid.clone()
        log_missing(src, s, empty)
        return Split(features=feats, valid=val, missing=miss, labels=labels, ids=[f"{s}:{i}" for i in range(N)])
