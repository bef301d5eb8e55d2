"""Numeric fixtures computed with the authors' public code (``../shared/reference/*.npz``), for tests.

The archives are not part of mmcore (their inputs come from the authors' code; see their README):
tests read them from ``$MMCORE_REFERENCE_DIR`` or from ``shared/reference`` beside the repository,
and skip with the reason when they are absent.

Keys are ``<function>__<field>__<case>`` (or ``<function>__<field>`` for a function with one case)::

    ref = load_reference("decalign")              # pytest.skip(...) when the archive is absent
    ref.functions()                               # ['_distribution_stats', '_fit_gmm_em', ...]
    ref.cases("_fit_gmm_em")                      # ['B16', 'B16_iters2', 'B5']
    g = ref.group("_fit_gmm_em", "B16")           # {'x': array, 'mu': array, 'gmm_em_iters': 5, ...}
    g.scalar("gmm_em_iters")                      # a Python int / float / bool / str

Comparisons: :func:`assert_close` (relative 1e-6 by default, as the fixtures' README suggests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["reference_dir", "load_reference", "ReferenceFixtures", "ReferenceGroup", "assert_close", "readout"]

#: Environment variable that points at the folder holding ``decalign.npz``, ``mm_align.npz``.
ENV = "MMCORE_REFERENCE_DIR"


def reference_dir() -> Path:
    """``$MMCORE_REFERENCE_DIR``, else ``shared/reference`` beside the repository of this checkout."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    repo = Path(__file__).resolve().parents[2]  # mmcore/testing/reference.py -> the repository root
    return repo.parent / "shared" / "reference"


class ReferenceGroup(dict):
    """The arrays of one ``(function, case)``: field name -> numpy array (0-d for hyper-parameters)."""

    def scalar(self, field: str) -> Any:
        """A 0-d field as a Python value (int, float, bool or str)."""
        return self[field].item()

    def tensor(self, field: str, *, requires_grad: bool = False, dtype=None):
        """A field as a torch tensor (float64 stays float64; ``requires_grad`` for inputs)."""
        import torch

        t = torch.from_numpy(self[field].copy())
        if dtype is not None:
            t = t.to(dtype)
        return t.requires_grad_(requires_grad)


class ReferenceFixtures:
    """One archive, grouped by function and case."""

    def __init__(self, path: Path):
        import numpy as np

        self.path = path
        with np.load(path, allow_pickle=False) as z:
            self._arrays = {k: z[k] for k in z.files}
        self._groups: dict[tuple[str, str], ReferenceGroup] = {}
        for key, arr in self._arrays.items():
            parts = key.split("__")
            if len(parts) not in (2, 3):
                raise ValueError(f"{path}: key {key!r} is not <function>__<field>[__<case>]")
            fn, field, case = parts[0], parts[1], (parts[2] if len(parts) == 3 else "")
            self._groups.setdefault((fn, case), ReferenceGroup())[field] = arr

    def functions(self) -> list[str]:
        return sorted({fn for fn, _ in self._groups})

    def cases(self, function: str) -> list[str]:
        """The case names of ``function`` ('' for a function stored without a case)."""
        out = sorted(case for fn, case in self._groups if fn == function)
        if not out:
            raise KeyError(f"{self.path.name} has no function {function!r}; it has {self.functions()}")
        return out

    def group(self, function: str, case: str = "") -> ReferenceGroup:
        try:
            return self._groups[(function, case)]
        except KeyError:
            raise KeyError(f"{self.path.name} has no group {function!r} case {case!r}; cases of that function: "
                           f"{[c for f, c in self._groups if f == function]}") from None


def load_reference(name: str) -> ReferenceFixtures:
    """The archive ``<name>.npz``; skips the calling test (with the path) when it is absent."""
    path = reference_dir() / f"{name}.npz"
    if not path.exists():
        import pytest

        pytest.skip(f"authors' reference fixtures not found at {path} (shared/ must sit beside the repository, "
                    f"or set {ENV})")
    return ReferenceFixtures(path)


def readout(outputs: dict, group: ReferenceGroup):
    r"""The fixtures' scalar readout of ``outputs`` (README §1).

    $$r = \sum_f \mathrm{sum}(o_f \odot w_f) + \sum_{f\ \text{0-d, no weight}} o_f$$

    where $w_f$ = ``group['readout_weight_<f>']``. ``outputs`` maps field names to torch tensors;
    outputs that are neither weighted nor 0-d are left out (diagnostics).
    """
    import torch

    total = None
    for f, o in outputs.items():
        w = group.get(f"readout_weight_{f}")
        if w is not None:
            term = (o * torch.from_numpy(w.copy()).to(o.dtype)).sum()
        elif o.dim() == 0:
            term = o
        else:
            continue
        total = term if total is None else total + term
    return total


def assert_close(actual, expected, *, rtol: float = 1e-6, atol: float = 1e-12, what: str = "") -> None:
    """``actual`` (tensor or array) equals the fixture ``expected`` to ``rtol`` relative (plus a tiny ``atol``)."""
    import numpy as np

    a = actual.detach().cpu().numpy() if hasattr(actual, "detach") else np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} != reference {e.shape}")
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=what)
