"""The compiled one-pass Sinkhorn iterations (``_cpu_sinkhorn``) give the torch loop's results, or are skipped."""

from __future__ import annotations

import logging
import math
import warnings

import pytest
import torch

from mmcore import native
from mmcore_plugin_ot import _cpu_sinkhorn
from mmcore_plugin_ot import sinkhorn as sk
from mmcore_plugin_ot._masks import uniform_weights
from mmcore_plugin_ot.sinkhorn import ConvergenceWarning, sinkhorn_plan

pytestmark = pytest.mark.filterwarnings("ignore::mmcore_plugin_ot.sinkhorn.ConvergenceWarning")


@pytest.fixture
def compiled():
    """The built library; skips, saying why, where it does not build here."""
    build = _cpu_sinkhorn.load()
    if build.lib is None:
        pytest.skip(f"the C++ Sinkhorn iterations did not build here: {build.error}")
    return build


@pytest.fixture
def calls(monkeypatch):
    """The sizes of the compiled blocks used (so that an equality test cannot pass on the torch path twice)."""
    seen = []
    block = _cpu_sinkhorn.Sweep.block

    def spy(self, k):
        seen.append(self.sizes[k])
        return block(self, k)

    monkeypatch.setattr(_cpu_sinkhorn.Sweep, "block", spy)
    return seen


def _problem(seed: int, dtype: torch.dtype, masked: bool, B: int = 4, n: int = 9, m: int = 13, scale: float = 1.0):
    """Random costs in [0, scale); with ``masked``, padded rows/columns and a band of +inf costs (feasible)."""
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(B, n, m, generator=g, dtype=torch.float64) * scale
    if masked:
        na, mb = torch.randint(1, n + 1, (B, 1, 1), generator=g), torch.randint(1, m + 1, (B, 1, 1), generator=g)
        na[0], mb[0] = n, m  # one full pair
        i, j = torch.arange(n)[:, None], torch.arange(m)[None]
        cost = cost.masked_fill((i * mb / na - j).abs() > 3, math.inf)  # a window on the real lengths, as MM-Align's
        valid_a, valid_b = torch.arange(n) < na[:, 0], torch.arange(m) < mb[:, 0]
        a, b = uniform_weights(valid_a, torch.float64), uniform_weights(valid_b, torch.float64)
    else:
        a, b = torch.full((B, n), 1.0 / n, dtype=torch.float64), torch.full((B, m), 1.0 / m, dtype=torch.float64)
    return a.to(dtype), b.to(dtype), cost.to(dtype)


def _both(a, b, cost, reg, **kw):
    """(compiled result, torch-loop result) of the same solve."""
    res = sinkhorn_plan(a, b, cost, reg, **kw)
    _cpu_sinkhorn.ENABLED = False
    try:
        ref = sinkhorn_plan(a, b, cost, reg, **kw)
    finally:
        _cpu_sinkhorn.ENABLED = True
    return res, ref


def _assert_same(res, ref, atol: float, rtol: float) -> None:
    assert res.n_iter == ref.n_iter
    scale = float(ref.plan.abs().max())
    torch.testing.assert_close(res.plan, ref.plan, atol=max(atol, rtol * scale), rtol=rtol)
    torch.testing.assert_close(res.err, ref.err, atol=max(atol, rtol * scale), rtol=rtol)


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded-window"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reg", [0.5, 0.05, 0.002])  # the smallest one absorbs and falls back to the log domain
def test_compiled_iterations_equal_torch_loop_float64(compiled, calls, seed, masked, reg):
    a, b, cost = _problem(seed, torch.float64, masked)
    res, ref = _both(a, b, cost, reg, tol=1e-9, max_iter=2000)
    assert sum(calls) == res.n_iter  # every block ran compiled (the torch side none)
    _assert_same(res, ref, atol=1e-12, rtol=0.0)
    torch.testing.assert_close(res.log_u, ref.log_u, atol=1e-9, rtol=1e-12)


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded-window"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reg", [0.5, 0.05, 0.002])
def test_compiled_iterations_equal_torch_loop_float32(compiled, calls, seed, masked, reg):
    a, b, cost = _problem(seed, torch.float32, masked)
    res, ref = _both(a, b, cost, reg, tol=1e-6, max_iter=2000)
    assert sum(calls) == res.n_iter
    _assert_same(res, ref, atol=0.0, rtol=1e-5)


def test_compiled_iterations_equal_torch_loop_at_benchmark_size(compiled, calls):
    a, b, cost = _problem(0, torch.float64, False, B=3, n=50, m=500, scale=2.0)
    res, ref = _both(a, b, cost, 0.05, tol=1e-9)
    assert calls and res.n_iter > 10
    _assert_same(res, ref, atol=1e-12, rtol=0.0)


def test_a_row_with_no_admissible_cell_gives_the_same_result(compiled, calls):
    a, b, cost = _problem(1, torch.float64, True)
    cost[1, 0] = math.inf  # row 0 of pair 1 can send its mass nowhere: no mass, a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        res, ref = _both(a, b, cost, 0.05, tol=1e-9, max_iter=200)
    assert calls and len([w for w in caught if w.category is ConvergenceWarning]) == 2
    _assert_same(res, ref, atol=1e-12, rtol=0.0)
    assert (res.plan[1, 0] == 0).all()


def test_autograd_through_the_iterations_keeps_the_torch_loop(compiled, calls):
    a, b, cost = _problem(2, torch.float64, True)
    cost.requires_grad_(True)
    sinkhorn_plan(a, b, cost, 0.1).plan.sum().backward()
    assert calls == [] and torch.isfinite(cost.grad).all()
    sinkhorn_plan(a, b, cost, 0.1, detach=True)  # detach: the iterations need no graph
    assert calls


def test_two_threads_give_the_one_thread_plans(compiled, calls, monkeypatch):
    monkeypatch.setattr(sk, "SERIAL_BELOW", 0)  # let the solve keep torch's two threads
    a, b, cost = _problem(3, torch.float64, True, B=5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = sinkhorn_plan(a, b, cost, 0.05, tol=1e-9)
        torch.set_num_threads(1)
        one = sinkhorn_plan(a, b, cost, 0.05, tol=1e-9)
    finally:
        torch.set_num_threads(before)
    assert calls and two.n_iter == one.n_iter and torch.equal(two.plan, one.plan)  # pairs are independent


def test_failed_build_falls_back_to_the_torch_loop_and_logs_once(monkeypatch, tmp_path, caplog, calls):
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_builds", {})
    monkeypatch.setattr(_cpu_sinkhorn, "_logged", False)
    a, b, cost = _problem(0, torch.float64, True)
    with caplog.at_level(logging.WARNING, logger="mmcore_plugin_ot.sinkhorn"):
        res = sinkhorn_plan(a, b, cost, 0.05, tol=1e-9)
        again = sinkhorn_plan(a, b, cost, 0.05, tol=1e-9)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "C++ CPU iterations are unavailable" in messages[0] and "exited with" in messages[0]
    assert calls == [] and torch.equal(res.plan, again.plan)
    assert float((res.plan.sum(2) - a).abs().max()) < 1e-9


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_validation_raises_what_the_torch_checks_raise(compiled, dtype):
    a, b, cost = _problem(0, dtype, True)

    def message(a, b, cost, enabled):
        _cpu_sinkhorn.ENABLED = enabled
        try:
            sinkhorn_plan(a, b, cost, 0.05)
        except ValueError as e:
            return str(e)
        finally:
            _cpu_sinkhorn.ENABLED = True
        return None

    bad = []
    for what, value in (("a", -1e-3), ("a", math.nan), ("b", math.nan), ("cost", math.nan), ("cost", -math.inf)):
        x = {"a": a, "b": b, "cost": cost}
        x[what] = x[what].clone()
        x[what].view(-1)[5] = value
        bad.append(x)
    heavy = a.clone()
    heavy[2] *= 1.01
    bad.append({"a": heavy, "b": b, "cost": cost})  # unbalanced: names the pair and its sums
    for x in bad:
        got = message(x["a"], x["b"], x["cost"], True)
        assert got is not None and got == message(x["a"], x["b"], x["cost"], False)
    stats = _cpu_sinkhorn.check_stats(a, b, cost)
    finite = cost.masked_fill(cost == math.inf, 0.0).abs().amax()
    assert stats[:5] == [float(a.amin()), float(b.amin()), float(cost.amin()), math.inf, float(finite)]
