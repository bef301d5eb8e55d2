"""Hypothesis strategies for property-testing OT and alignment components, plus test profiles.

Everything returns NumPy float64 arrays (convert with ``torch.from_numpy``); importing this module
needs only ``numpy`` and ``hypothesis`` — no torch. Sizes are fixed when given as an int and drawn
from ``[min_*, max_*]`` when ``None``.

Example::

    from hypothesis import given
    from mmcore.testing.strategies import ot_problems

    @given(ot_problems(max_size=8))
    def test_plan_marginals_match(problem):
        a, b, cost = problem
        ...

Profiles: :func:`register_profiles` registers ``fast`` (50 examples, no deadline: the default in
mmcore's own test suites) and ``thorough`` (10,000 examples); select one with pytest's
``--hypothesis-profile thorough`` (from hypothesis's pytest plugin) after registering.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "weights",
    "cost_matrices",
    "ot_problems",
    "spd_matrices",
    "padded_batches",
    "register_profiles",
    "FAST_EXAMPLES",
    "THOROUGH_EXAMPLES",
]

FAST_EXAMPLES = 50
THOROUGH_EXAMPLES = 10_000


def register_profiles() -> None:
    """Register the ``fast`` and ``thorough`` hypothesis profiles; safe to call any number of times.

    Both have ``deadline=None`` (kernels run at different speeds on CI, laptops and GPUs) and
    suppress ``HealthCheck.too_slow`` (array strategies with many elements trip it). Registering
    does not load: call ``settings.load_profile("fast")`` or pass ``--hypothesis-profile``.
    """
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("fast", max_examples=FAST_EXAMPLES, **common)
    settings.register_profile("thorough", max_examples=THOROUGH_EXAMPLES, **common)


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _size(size: int | None, low: int, high: int) -> st.SearchStrategy[int]:
    if size is not None:
        if size < 1:
            raise ValueError(f"size must be >= 1; got {size}")
        return st.just(size)
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= min_size <= max_size; got {low}, {high}")
    return st.integers(low, high)


@st.composite
def weights(
    draw, size: int | None = None, *, min_size: int = 1, max_size: int = 16, min_weight: float = 1e-3
) -> np.ndarray:
    """A positive weight vector summing to 1: shape (size,).

    Args:
        size: fixed length, or None to draw it from [min_size, max_size].
        min_weight: smallest raw weight before normalisation (raw weights lie in [min_weight, 1]),
            so the largest/smallest ratio is at most 1/min_weight.
    """
    n = draw(_size(size, min_size, max_size))
    raw = draw(hnp.arrays(np.float64, n, elements=_floats(min_weight, 1.0)))
    return raw / raw.sum()


@st.composite
def cost_matrices(
    draw,
    n: int | None = None,
    m: int | None = None,
    *,
    min_size: int = 1,
    max_size: int = 16,
    low: float = 0.0,
    high: float = 1.0,
    symmetric: bool = False,
) -> np.ndarray:
    """A cost matrix with entries in [low, high]: shape (n, m); ``symmetric=True`` forces n == m and C = Cᵀ."""
    n = draw(_size(n, min_size, max_size))
    m = n if symmetric else draw(_size(m, min_size, max_size))
    c = draw(hnp.arrays(np.float64, (n, m), elements=_floats(low, high)))
    if symmetric:
        c = np.triu(c) + np.triu(c, 1).T
    return c


@st.composite
def ot_problems(
    draw,
    *,
    min_size: int = 1,
    max_size: int = 16,
    low: float = 0.0,
    high: float = 1.0,
    symmetric: bool = False,
    uniform: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One balanced OT problem ``(a (n,), b (m,), cost (n, m))``.

    ``symmetric=True`` gives a symmetric cost and ``b = a``; ``uniform=True`` gives uniform weights.
    """
    cost = draw(cost_matrices(min_size=min_size, max_size=max_size, low=low, high=high, symmetric=symmetric))
    n, m = cost.shape
    if uniform:
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    else:
        a = draw(weights(n))
        b = a.copy() if symmetric else draw(weights(m))
    return a, b, cost


@st.composite
def spd_matrices(
    draw,
    d: int | None = None,
    *,
    min_dim: int = 1,
    max_dim: int = 6,
    min_eig: float = 1e-2,
    max_eig: float = 10.0,
    diagonal: bool = False,
) -> np.ndarray:
    """A symmetric positive-definite matrix with eigenvalues in [min_eig, max_eig]: shape (d, d).

    Built as Q diag(λ) Qᵀ with Q orthogonal (QR of a drawn matrix), so the condition number is at
    most max_eig / min_eig. ``diagonal=True`` returns diag(λ) (use ``np.diagonal`` for variances).
    """
    d = draw(_size(d, min_dim, max_dim))
    lam = draw(hnp.arrays(np.float64, d, elements=_floats(min_eig, max_eig)))
    if diagonal:
        return np.diag(lam)
    g = draw(hnp.arrays(np.float64, (d, d), elements=_floats(-1.0, 1.0)))
    q, _ = np.linalg.qr(g)  # Householder QR: q is orthogonal even when g is singular (e.g. all zeros)
    s = (q * lam) @ q.T
    return 0.5 * (s + s.T)


@st.composite
def padded_batches(
    draw,
    *,
    min_batch: int = 1,
    max_batch: int = 4,
    min_len: int = 1,
    max_len: int = 12,
    dim: int | None = None,
    min_dim: int = 1,
    max_dim: int = 8,
    bound: float = 10.0,
    allow_empty_rows: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch ``(features (B, T, d), valid (B, T) bool)``, valid tokens a prefix of each row.

    Each row has a drawn length in [min_len, T] (or [0, T] with ``allow_empty_rows``), T the
    longest. Padded positions hold drawn values too, never zeros, so a component that reads
    padding shows it. Features lie in [-bound, bound].
    """
    B = draw(st.integers(min_batch, max_batch))
    d = draw(_size(dim, min_dim, max_dim))
    lo = 0 if allow_empty_rows else max(1, min_len)
    lengths = draw(st.lists(st.integers(lo, max_len), min_size=B, max_size=B))
    T = max(max(lengths), 1)
    x = draw(hnp.arrays(np.float64, (B, T, d), elements=_floats(-bound, bound)))
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    return x, valid
