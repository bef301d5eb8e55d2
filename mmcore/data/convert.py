r"""Convert the MFN feature release (h5 files) to the npz layout of :mod:`mmcore.data.npz`.

Input: one h5 file per split × modality, each holding one dataset (``d1``), named as in the
release: ``audio_{split}.h5`` -> ``{split}_audio``, ``video_{split}.h5`` -> ``{split}_vision``,
``text_{split}_emb.h5`` -> ``{split}_text``, ``y_{split}.h5`` -> ``{split}_labels``.

Output: an npz with ``{split}_{modality}`` (N, T, d) float32 and ``{split}_labels``, written
atomically (a temporary file renamed into place).

Conventions (each a parameter of :func:`convert_release`, defaults in brackets):

- ``key`` [``d1``]: the dataset read from each file; a file without it but with exactly one
  dataset uses that one (logged).
- ``axes`` [``auto``]: the order of a feature array's axes. ``ntd`` = (N, T, d), as MFN's own
  ``get_data`` builds them ("n x seq x d") and as the npz layout stores them;
  ``tnd`` = (T, N, d), transposed to (N, T, d); ``auto`` picks ``ntd`` when the first axis has
  the split's label count, else ``tnd`` when the second has it (``ntd`` when both do).
- Features become float32 (the release stores float64) with values unchanged otherwise: no
  cleaning, no standardisation (the npz loader does both, with its own params).
- Labels keep their shape, except that an (N, 1) column becomes (N,): POM's (N, 17) trait
  columns stay (N, 17) and ``data.params.label_column`` picks one at load time. Float labels
  become float32; integer labels stay integers (int64), so ``task: auto`` reads them as classes.
- A split without a modality's file, or whose file cannot be read (not HDF5, e.g. an error page
  or a Git LFS pointer; no dataset), lacks that modality: the npz has no key for it and the
  loader marks it missing for every row of the split (naturally missing). This is logged and
  listed in the report. A split without readable labels is an error.
- Shapes that disagree (a feature array whose rows do not match the labels, a feature size
  that differs between splits, time axes of different lengths) are errors naming the file.

Verified here: on generated h5 files (tests/test_data_fetch_convert.py). Not verified here: the
real release's files (no network on the development machines); tests/test_data_fetch_convert.py
compares the conversion of the pinned ICT-MMMO files with the development machines' converted
copy array by array when both are on the machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .._lazy import require
from ..errors import DataError
from .catalogue import parse_release_name

__all__ = ["convert_release", "ConvertReport", "require_h5py", "read_h5", "Unreadable"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
MODALITIES = ("text", "audio", "vision")
Axes = Literal["auto", "ntd", "tnd"]

H5PY_HINT = 'pip install -c constraints.txt -e ".[data]"  (from a checkout; or: pip install h5py)'


def require_h5py():
    """The h5py module, or DataError saying what to install."""
    return require("h5py", lambda e: DataError(f"mmcore data: reading the release's h5 files needs h5py, which is not "
                                               f"installed ({type(e).__name__}: {e})\n  run: {H5PY_HINT}"))


class Unreadable(Exception):
    """A release file that cannot be read as an h5 array (the reason is the message)."""


def read_h5(path: str | os.PathLike, key: str = "d1") -> np.ndarray:
    """The array ``key`` of an h5 file; :class:`Unreadable` (with the reason) if it is not there."""
    h5py = require_h5py()
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise Unreadable(f"cannot open ({e.strerror or e})") from e
    if head.startswith(b"version https://git-lfs"):
        raise Unreadable("a Git LFS pointer, not the data")
    try:
        with h5py.File(path, "r") as h5:
            if key in h5 and isinstance(h5[key], h5py.Dataset):
                return np.asarray(h5[key][()])
            sets = [k for k in h5 if isinstance(h5[k], h5py.Dataset)]
            if len(sets) == 1:
                logger.info("%s: no dataset %r; using its only dataset %r", path.name, key, sets[0])
                return np.asarray(h5[sets[0]][()])
            raise Unreadable(f"no dataset {key!r} (datasets: {sets or 'none'})")
    except (OSError, KeyError, ValueError, TypeError) as e:
        kind = "not an HDF5 file" if head[:8] != b"\x89HDF\r\n\x1a\n" else "a damaged HDF5 file"
        raise Unreadable(f"{kind} ({type(e).__name__}: {e})") from e


@dataclass
class ConvertReport:
    """What :func:`convert_release` wrote: npz keys with shapes, and what is missing and why."""

    out: Path
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # "train text: no file text_train_emb.h5"
    transposed: list[str] = field(default_factory=list)  # file names read as (T, N, d)


def _labels(y: np.ndarray, name: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim not in (1, 2):
        raise DataError(f"{name}: labels must be (N,) or (N, K); got shape {y.shape}")
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    if y.dtype.kind != "f":
        raise DataError(f"{name}: labels must be numbers; got dtype {y.dtype}")
    return y.astype(np.float32)


def _orient(x: np.ndarray, n: int, axes: str, name: str) -> tuple[np.ndarray, bool]:
    """(N, T, d) from an ``axes``-ordered array with ``n`` rows; True if it was transposed."""
    if x.ndim != 3:
        raise DataError(f"{name}: features must be rank 3 ((N, T, d) or (T, N, d)); got shape {x.shape}")
    if axes == "ntd" or (axes == "auto" and x.shape[0] == n):
        if x.shape[0] != n:
            raise DataError(f"{name}: shape {x.shape} read as (N, T, d) has {x.shape[0]} rows but the split has "
                            f"{n} labels (axes: ntd; try axes tnd or auto)")
        return x, False
    if axes == "tnd" or (axes == "auto" and x.ndim == 3 and x.shape[1] == n):
        if x.shape[1] != n:
            raise DataError(f"{name}: shape {x.shape} read as (T, N, d) has {x.shape[1]} rows but the split has "
                            f"{n} labels (axes: tnd; try axes ntd or auto)")
        return x.transpose(1, 0, 2), True
    raise DataError(f"{name}: shape {x.shape} has no axis of the split's {n} labels; the file does not belong "
                    f"to these labels (is it from another dataset?)")


def convert_release(files: Mapping[str, str | os.PathLike], out: str | os.PathLike, *, key: str = "d1",
                    axes: Axes = "auto") -> ConvertReport:
    """Convert release files (release file name -> local path) into the npz ``out`` (see the module docstring).

    Raises: DataError for missing or unreadable labels, or shapes that disagree; a missing or
    unreadable feature file only leaves that modality out of its split.
    """
    if axes not in ("auto", "ntd", "tnd"):
        raise DataError(f"axes must be auto, ntd or tnd; got {axes!r}")
    require_h5py()
    by_role: dict[tuple[str, str], tuple[str, Path]] = {}
    for name, path in files.items():
        parsed = parse_release_name(name)
        if parsed is None:
            logger.debug("%s: not a release feature or label file; skipped", name)
            continue
        by_role[parsed] = (name, Path(path))
    report = ConvertReport(out=Path(out))
    arrays: dict[str, np.ndarray] = {}
    dims: dict[str, tuple[int, str]] = {}
    steps: tuple[int, str] | None = None
    for split in SPLITS:
        if ("labels", split) not in by_role:
            raise DataError(f"y_{split}.h5: the labels of split {split!r} are missing; every split needs its labels "
                            "(fetch them again, or put the file in the --from folder)")
        lname, lpath = by_role[("labels", split)]
        try:
            y = _labels(read_h5(lpath, key), lname)
        except Unreadable as e:
            raise DataError(f"{lpath}: cannot read the labels of split {split!r}: {e}; fetch it again "
                            "(mmcore data fetch NAME --force)") from e
        arrays[f"{split}_labels"] = y
        n = y.shape[0]
        for m in MODALITIES:
            if (m, split) not in by_role:
                report.missing.append(f"{split} {m}: no file")
                continue
            fname, fpath = by_role[(m, split)]
            try:
                raw = read_h5(fpath, key)
            except Unreadable as e:
                logger.warning("%s: unreadable (%s); split %r has no %s (marked missing when loaded)", fpath, e,
                               split, m)
                report.missing.append(f"{split} {m}: {fname} unreadable ({e})")
                continue
            x, flipped = _orient(raw, n, axes, fname)
            if flipped:
                report.transposed.append(fname)
            d, T = x.shape[2], x.shape[1]
            if m in dims and dims[m][0] != d:
                raise DataError(f"{fname}: modality {m!r} has d={d} here but d={dims[m][0]} in {dims[m][1]}; "
                                "every split needs the same feature size")
            dims.setdefault(m, (d, fname))
            if steps is not None and steps[0] != T:
                raise DataError(f"{fname}: T={T} steps but {steps[1]} has T={steps[0]}; the npz layout needs one "
                                "(word-aligned) time axis")
            steps = steps or (T, fname)
            arrays[f"{split}_{m}"] = np.ascontiguousarray(x, dtype=np.float32)
    for m in report.missing:
        logger.info("conversion: %s", m)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    report.shapes = {k: tuple(v.shape) for k, v in arrays.items()}
    return report
