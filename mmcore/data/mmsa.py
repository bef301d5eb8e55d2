r"""Pickles in the MMSA toolkit's layout: CMU-MOSI, MOSI-aligned, CMU-MOSEI, CH-SIMS.

Layout (thuiar/MMSA ``data_loader.py``): a dict with ``train``/``valid``/``test``, each a dict with
``text`` (N, T_t, d_t) (BERT or GloVe features), ``audio`` (N, T_a, d_a), ``vision`` (N, T_v, d_v),
``audio_lengths``/``vision_lengths`` (N,), ``regression_labels`` (N,), ``classification_labels``
(N,), ``id`` and ``raw_text``. Typical shapes: MOSI unaligned 50×768 / 375×5 / 500×20,
MOSEI 50×768 / 500×74 / 500×35, SIMS 39×768 / 400×33 / 55×709.

Validity: audio/vision valid prefixes come from ``{m}_lengths`` (clamped to [1, T], counts
logged); where a lengths key is absent (aligned data) and for text, a row's valid prefix ends at
its last non-zero step (≥ 1 token). Positions after the prefix are zeroed.

Deviations from MMSA's loader: non-finite values (MMSA audio holds -inf, which MMSA zeroes
silently) raise DataError unless ``nan_policy: zero``, which zeroes and logs them; the pickle is
read with an unpickler that only builds numpy arrays, dtypes, scalars and plain containers, so
a data file cannot run code.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .base import SPLITS, DatasetInfo, MultimodalData, Split
from .npz import check_finite, log_missing, natural_missing, resolve_path, standardize_splits
from .params import MmsaParams

__all__ = ["MmsaDataset", "make_mmsa_data", "write_mmsa_pickle", "MMSA_KEYS"]

logger = logging.getLogger(__name__)

#: the per-split keys of an MMSA pickle
MMSA_KEYS = ("text", "audio", "vision", "audio_lengths", "vision_lengths", "regression_labels",
             "classification_labels", "id", "raw_text")

_SAFE = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
         ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"),
         ("collections", "OrderedDict"), ("builtins", "slice")}


class _SafeUnpickler(pickle.Unpickler):
    """Builds only numpy arrays/dtypes/scalars and plain containers (no code from a data file)."""

    def find_class(self, module: str, name: str) -> Any:
        # pickles name numpy.core (numpy 1) or numpy._core (numpy 2); import whichever this numpy has
        mod = "numpy._core" + module[len("numpy.core"):] if module.startswith("numpy.core") else module
        if (mod, name) in _SAFE:
            if mod.startswith("numpy._core") and not hasattr(np, "_core"):
                mod = "numpy.core" + mod[len("numpy._core"):]
            return super().find_class(mod, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays and plain "
                                     f"containers are allowed in an MMSA pickle")


def _load_pickle(path: Path, src: str) -> Any:
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            OSError, MemoryError) as e:
        raise DataError(f"{src}: cannot read as an MMSA pickle ({type(e).__name__}: {e}); the file is corrupt or "
                        f"not a pickle of numpy arrays: re-download it or re-create it with write_mmsa_pickle") from e


def _prefix_from_nonzero(x: np.ndarray) -> np.ndarray:
    """Valid length = 1 + last step with a non-zero feature (>= 1). Shapes: (N, T, d) -> (N,)."""
    nz = np.any(x != 0, axis=2)  # (N, T)
    T = nz.shape[1]
    return np.where(nz.any(1), T - np.argmax(nz[:, ::-1], axis=1), 1)


class MmsaDataset(MultimodalData):
    """An MMSA pickle (see the module docstring). Built as ``MmsaDataset(params, modalities, seed)``.

    Raises: DataError for a missing/corrupt file, a missing split or key, wrong ranks or sizes,
    non-finite values (nan_policy: error), or a requested modality the file lacks.
    """

    def source_files(self) -> list[str]:
        return [self.params.path]

    def __init__(self, params: MmsaParams, modalities: list[str], seed: int):
        if not isinstance(params, MmsaParams):
            params = MmsaParams.model_validate(params)
        self.params, self.modalities = params, list(modalities)
        src = params.path
        data = _load_pickle(resolve_path(src, "MMSA pickle"), src)
        if not isinstance(data, dict):
            raise DataError(f"{src}: an MMSA pickle is a dict with train/valid/test; got {type(data).__name__}")
        for s in SPLITS:
            key = params.splits[s]
            if not isinstance(data.get(key), dict):
                raise DataError(f"{src}: split {key!r} is missing or not a dict; top-level keys: {sorted(map(str, data))}"
                                f" (set data.params.splits if the file names it differently)")
        raw = {s: data[params.splits[s]] for s in SPLITS}
        available = [m for m in ("text", "audio", "vision") if any(m in raw[s] for s in SPLITS)]
        unknown = [m for m in self.modalities if m not in available]
        if unknown or not self.modalities:
            raise DataError(f"{src}: modalities {unknown or self.modalities} are not in any split of the file; "
                            f"available modalities: {available}")
        # a modality some splits lack (e.g. text only in valid/test) is naturally missing there: zeros of the
        # shape the other splits give
        self._shape = {m: next(np.asarray(raw[s][m]).shape[1:] for s in SPLITS if m in raw[s]) for m in self.modalities}
        self.splits = {s: self._split(raw[s], s, src) for s in SPLITS}
        dims = {m: int(self.splits["train"].features[m].shape[2]) for m in self.modalities}
        for s, sp in self.splits.items():
            for m in self.modalities:
                if sp.features[m].shape[2] != dims[m]:
                    raise DataError(f"{src}: modality {m!r} has d={sp.features[m].shape[2]} in split {s!r} but "
                                    f"d={dims[m]} in train; every split needs the same feature size")
        self.stats = standardize_splits(self.splits, self.modalities, src) if params.standardize else {}
        if params.label_key == "classification":
            task, metric_set = "classification", "classification"
            num_classes = 1 + max(int(sp.labels.max()) for sp in self.splits.values())
        else:
            task, num_classes = "regression", 0
            metric_set = params.metric_set
            if metric_set == "auto":
                top = max(float(sp.labels.abs().max()) for sp in self.splits.values())
                metric_set = "sims" if top <= 1.0 else "mosi"
        self.info = DatasetInfo(name=Path(src).stem, task=task, num_classes=num_classes, metric_set=metric_set,
                                dims=dims, lengths={m: int(self.splits["train"].features[m].shape[1])
                                                    for m in self.modalities})
        logger.info("%s: loaded %s rows, modalities %s, metric set %s", src,
                    {s: len(sp) for s, sp in self.splits.items()}, self.modalities, metric_set)

    def _get(self, d: dict, key: str, s: str, src: str) -> np.ndarray:
        if key not in d:
            raise DataError(f"{src}: split {s!r} lacks key {key!r}; its keys: {sorted(map(str, d))}; an MMSA "
                            f"pickle has {', '.join(MMSA_KEYS)}")
        try:
            return np.asarray(d[key])
        except (ValueError, TypeError) as e:
            raise DataError(f"{src}: split {s!r}, key {key!r} is not an array ({e})") from e

    def _split(self, d: dict, s: str, src: str) -> Split:
        label_key = f"{self.params.label_key}_labels"
        y = self._get(d, label_key, s, src)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"{src}: split {s!r}: {label_key!r} must be (N,); got shape {y.shape}")
        if not np.all(np.isfinite(y.astype(np.float64))):
            raise DataError(f"{src}: split {s!r}: {label_key!r} holds non-finite labels; fix or drop those rows")
        N = y.shape[0]
        feats, valid, miss, empty = {}, {}, {}, {}
        for m in self.modalities:
            if m not in d:
                T, dim = self._shape[m]
                logger.info("%s: modality %r absent from split %r: all %d rows marked missing", src, m, s, N)
                feats[m] = torch.zeros(N, T, dim)
                valid[m] = torch.arange(T)[None, :].expand(N, T) < 1
                miss[m] = torch.ones(N, dtype=torch.bool)
                continue
            x = self._get(d, m, s, src)
            if x.ndim != 3:
                raise DataError(f"{src}: split {s!r}: {m!r} must be (N, T, d) (rank 3); got shape {x.shape}")
            if x.shape[0] != N:
                raise DataError(f"{src}: split {s!r}: {m!r} has {x.shape[0]} rows but {label_key!r} has {N}")
            x = check_finite(x.astype(np.float32, copy=False), file=src, split=s, modality=m,
                             policy=self.params.nan_policy)
            T = x.shape[1]
            lk = f"{m}_lengths"
            stored = None
            if m != "text" and lk in d:
                stored = self._get(d, lk, s, src).reshape(-1)
                if stored.shape[0] != N:
                    raise DataError(f"{src}: split {s!r}: {lk!r} has {stored.shape[0]} entries but {N} rows")
                lengths = np.clip(stored.astype(np.int64), 1, T)
                clipped = int(((stored != lengths) & (stored > 0)).sum())
                if clipped:
                    logger.info("%s: split %r: %d %s values outside [1, %d] clamped", src, s, clipped, lk, T)
            else:
                lengths = _prefix_from_nonzero(x)
            v = np.arange(T)[None, :] < lengths[:, None]  # (N, T)
            gone = natural_missing(x, stored) if self.params.natural_missing else np.zeros(N, dtype=bool)
            empty[m] = (int(gone.sum()), N)
            feats[m] = torch.from_numpy(np.where(v[..., None] & ~gone[:, None, None], x, 0).astype(np.float32))
            valid[m], miss[m] = torch.from_numpy(v), torch.from_numpy(gone)
        log_missing(src, s, empty)
        if self.params.label_key == "classification":
            labels = torch.from_numpy(y.astype(np.int64))
        else:
            labels = torch.from_numpy(y.astype(np.float32))
        ids = [str(i) for i in np.asarray(d["id"]).reshape(-1)] if "id" in d else None
        return Split(features=feats, valid=valid, missing=miss, labels=labels, ids=ids)


def make_mmsa_data(*, sizes: tuple[int, int, int] = (16, 8, 8), shapes: dict[str, tuple[int, int]] | None = None,
                   label_range: float = 3.0, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """A small random dataset with exactly MMSA's keys (``MMSA_KEYS``) per split.

    ``shapes``: modality -> (T, d) (default text (10, 16), audio (12, 5), vision (14, 6)). Text rows
    are zero after a random length; audio/vision are zero after their ``*_lengths``. Regression
    labels lie on a 1/3 grid in [-label_range, label_range] (zeros included);
    classification labels are 0/1/2 for negative/neutral/positive.
    """
    shapes = shapes or {"text": (10, 16), "audio": (12, 5), "vision": (14, 6)}
    rng = np.random.default_rng(seed)
    out = {}
    for s, n in zip(SPLITS, sizes):
        d: dict[str, Any] = {}
        for m, (T, dim) in shapes.items():
            L = rng.integers(1, T + 1, size=n)
            x = rng.standard_normal((n, T, dim)).astype(np.float32)
            x[np.arange(T)[None, :] >= L[:, None]] = 0
            d[m] = x
            if m != "text":
                d[f"{m}_lengths"] = L.astype(np.int64)
        steps = int(round(3 * label_range))
        y = rng.integers(-steps, steps + 1, size=n) / 3.0
        d["regression_labels"] = y.astype(np.float32)
        d["classification_labels"] = (np.sign(y) + 1).astype(np.int64)
        d["id"] = np.array([f"{s}_clip{i}" for i in range(n)])
        d["raw_text"] = np.array([f"utterance {i} of {s}" for i in range(n)])
        out[s] = d
    return out


def write_mmsa_pickle(path: str | Path, data: dict | None = None, **make_kwargs: Any) -> dict:
    """Write ``data`` (default: :func:`make_mmsa_data` with ``make_kwargs``) as an MMSA pickle; return it."""
    data = make_mmsa_data(**make_kwargs) if data is None else data
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    return data
