"""DDP on CPU: two gloo processes train to the same metrics as one process with the same global batch.

All two-process runs of this file share one start of the processes (a module fixture), since
starting them (each imports torch) costs more than the tiny runs themselves.
"""

import json
import math
import os

import pytest
import torch
from torch import nn

from conftest import PhasedScaleAligner
from mmcore.data.base import Split, iterate_batches
from mmcore.spec import spec_from_dict
from mmcore.testing.distributed import DistributedJob, run_distributed_jobs
from mmcore.train.distributed import real_rows
from mmcore.train.run import load_run, train_run

WORLD = 2
# Relative tolerance of DDP vs one process. The two compute the same gradients in a different
# float32 summation order (each rank's batch mean, then the all-reduce average, vs one mean over
# the whole batch): observed ≤ 1e-7 relative on the metrics after 4 epochs. 1e-5 leaves two orders
# of magnitude for other CPUs' kernels, while a real error — the sampler's padding row counted
# twice, an unweighted uneven last batch — moved validation/test MAE by 2e-3 to 4e-3 here.
RTOL = 1e-5
ATOL = 1e-6  # for metrics near 0 (corr of a barely trained model)

# n_train 61 with a global batch of 16: batches of 16, 16, 16, 13 — the last one uneven over two
# ranks (7 + 6 rows) and padded by one repeated row, as DistributedSampler pads; 31/33 rows for
# valid/test make the gathered evaluation drop a padding row too.
DATA = {"name": "synthetic", "params": {"n_train": 61, "n_valid": 31, "n_test": 33,
                                        "dims": {"text": 8, "audio": 6, "vision": 5},
                                        "lengths": {"text": 6, "audio": 9, "vision": 7}}}


def spec(**changes) -> dict:
    s = {"seed": 5, "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 16, "dropout": 0.0},
         "encoders": {"default": {"name": "linear"}}, "fuser": {"name": "concat_pool"},
         "head": {"name": "regression_mlp", "params": {"hidden": 8}}, "data": DATA,
         "train": {"epochs": 4, "batch_size": 16, "lr": 3e-3, "select_metric": "mae", "device": "cpu"}}
    for k, v in changes.items():
        s[k] = {**s[k], **v} if isinstance(s.get(k), dict) and isinstance(v, dict) else v
    return s


PLAIN = spec()
PHASED = spec(aligner={"name": "ddp_test_phased"}, train={"epochs": 3})
# an imputer whose EMA statistic is all-reduced over ranks, with temporal masking (no dropout)
SYNCED = spec(imputer={"name": "ddp_test_sync_mean"}, missing={"train": [{"type": "temporal", "rate": 0.3}]})
# temporal masking in training and evaluation, dropout, and a mean imputer (an EMA buffer)
# (a fast EMA, so a rank evaluating with its own buffer instead of rank 0's would show)
MASKED = spec(model={"d_model": 16, "dropout": 0.3}, imputer={"name": "mean", "params": {"momentum": 0.5}},
              missing={"train": [{"type": "temporal", "rate": 0.3}]})


class DDPTestSyncMeanImputer(nn.Module):
    """Mean-fill imputer whose fill value is the EMA of the observed tokens' mean over the *global*
    batch: (Σ z, count) all-reduced with ``sum_across_ranks`` — the recipe docs/scaling.md gives
    for statistics that must not be rank 0's share only."""

    def __init__(self, params, ctx):
        super().__init__()
        self.names = list(ctx.modalities)
        self.register_buffer("mean", torch.zeros(len(self.names), ctx.d_model))

    def forward(self, seqs, batch):
        from mmcore.builtins.imputers import absent_positions
        from mmcore.protocols import ImputerOutput
        from mmcore.train.distributed import sum_across_ranks

        out = {}
        for i, m in enumerate(self.names):
            x = seqs[m]
            absent = absent_positions(batch, m)  # (B, T)
            if self.training:  # the same on every rank: the collective is never skipped by one of them
                observed = (batch.valid[m] & ~absent).unsqueeze(-1)  # (B, T, 1)
                stats = torch.cat([(x.detach().float() * observed).sum((0, 1)), observed.sum().float().view(1)])
                stats = sum_across_ranks(stats)  # (d + 1,)
                with torch.no_grad():
                    self.mean[i] = 0.9 * self.mean[i] + 0.1 * stats[:-1] / stats[-1].clamp_min(1)
            out[m] = torch.where(absent.unsqueeze(-1), self.mean[i].to(x.dtype), x)
        return ImputerOutput(out, {})


def register_fixtures() -> None:
    """``setup`` for the ranks (and this process): register the fixture components in-process."""
    import mmcore
    from mmcore.params import NoParams

    class DDPTestParams(NoParams):
        """No params (test fixture)."""

    # phases leave parameters without gradients in a step, so DDP needs find_unused_parameters
    mmcore.register("aligner", "ddp_test_phased", params=DDPTestParams)(PhasedScaleAligner)
    mmcore.register("imputer", "ddp_test_sync_mean", params=DDPTestParams)(DDPTestSyncMeanImputer)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every two-process run of this file, in one start of the processes, plus one-process references."""
    from mmcore.registry import reset_registry

    d = tmp_path_factory.mktemp("ddp")
    jobs = {"plain": DistributedJob(PLAIN, str(d / "plain")),
            "phased": DistributedJob(PHASED, str(d / "phased")),
            "synced": DistributedJob(SYNCED, str(d / "synced")),
            "masked": DistributedJob(MASKED, str(d / "masked")),
            "cut": DistributedJob({**MASKED, "train": {**MASKED["train"], "epochs": 2}}, str(d / "cut")),
            "resumed": DistributedJob(MASKED, str(d / "cut"), resume=True)}
    out = dict(zip(jobs, run_distributed_jobs(list(jobs.values()), WORLD, setup=register_fixtures)))
    reset_registry()
    try:
        register_fixtures()
        for name in ("plain", "phased", "synced"):
            rs = spec_from_dict(jobs[name].spec)
            out[f"single_{name}"] = train_run(rs, str(d / f"single_{name}"), progress=False)
    finally:
        reset_registry()
    out["dirs"] = {k: d / k for k in ("plain", "phased", "synced", "masked", "cut", "single_plain", "single_phased",
                                      "single_synced")}
    return out


def _history(run_dir) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _close(a: dict, b: dict, where: str) -> None:
    assert a.keys() == b.keys(), where
    for k in a:
        if isinstance(a[k], float) and isinstance(b[k], float):
            assert math.isclose(a[k], b[k], rel_tol=RTOL, abs_tol=ATOL), f"{where}: {k} {a[k]!r} vs {b[k]!r}"
        else:
            assert a[k] == b[k], f"{where}: {k} {a[k]!r} vs {b[k]!r}"


@pytest.mark.parametrize("n,per_rank,world", [(61, 8, 2), (64, 8, 2), (7, 2, 4), (5, 4, 3), (1, 3, 2), (10, 1, 3)])
def test_rank_batches_together_are_the_single_process_batch(n, per_rank, world):
    split = Split(features={"x": torch.zeros(n, 1, 1)}, valid={"x": torch.ones(n, 1, dtype=torch.bool)},
                  missing={"x": torch.zeros(n, dtype=torch.bool)}, labels=torch.arange(n, dtype=torch.float32))
    single = [b.index.tolist() for b in iterate_batches(split, per_rank * world, shuffle=True,
                                                        generator=torch.Generator().manual_seed(1))]
    ranks = []
    for r in range(world):
        batches = list(iterate_batches(split, per_rank, shuffle=True, generator=torch.Generator().manual_seed(1),
                                       rank=r, world_size=world))
        rows = real_rows(n, per_rank, r, world)
        assert len(batches) == len(rows)
        ranks.append([(b.index.tolist(), mine, everyone) for b, (mine, everyone) in zip(batches, rows)])
    assert len(ranks[0]) == len(single)
    for k, want in enumerate(single):
        got = [i for r in range(world) for i in ranks[r][k][0][:ranks[r][k][1]]]  # the real rows of every rank
        assert sorted(got) == sorted(want) and all(ranks[r][k][2] == len(want) for r in range(world))


def test_two_processes_match_one_process(runs):
    single, ddp = runs["single_plain"], runs["plain"]
    for r in range(WORLD):
        _close(ddp[r]["test"], single["test"], f"test metrics, rank {r}")
        assert ddp[r]["best_epoch"] == single["best_epoch"]
    # per-epoch validation metrics and the train loss (reduced over ranks) follow the same path
    for a, b in zip(_history(runs["dirs"]["plain"]), _history(runs["dirs"]["single_plain"]), strict=True):
        _close(a, b, f"epoch {b['epoch']}")


def test_phases_with_several_steps_match_one_process(runs):
    single, ddp = runs["single_phased"], runs["phased"]
    _close(ddp[0]["test"], single["test"], "test metrics")
    for a, b in zip(_history(runs["dirs"]["phased"]), _history(runs["dirs"]["single_phased"]), strict=True):
        _close(a, b, f"epoch {b['epoch']}")
    assert [h["phase"] for h in _history(runs["dirs"]["phased"])] == ["warmup", "main", "main"]


def test_statistics_reduced_over_ranks_match_one_process(runs):
    single, ddp = runs["single_synced"], runs["synced"]
    _close(ddp[0]["test"], single["test"], "test metrics")
    for a, b in zip(_history(runs["dirs"]["synced"]), _history(runs["dirs"]["single_synced"]), strict=True):
        _close(a, b, f"epoch {b['epoch']}")


def test_masking_and_dropout_ranks_agree_with_the_saved_model(runs):
    ddp = runs["masked"]
    assert ddp[0]["test"] == ddp[1]["test"] and ddp[0]["best_epoch"] == ddp[1]["best_epoch"]
    assert all(math.isfinite(v) for v in ddp[0]["test"].values())
    # what the ranks evaluated together, in the epoch selected and at the end, is the model rank 0
    # saved (EMA buffer included), evaluated again by one process
    saved = load_run(str(runs["dirs"]["masked"]))
    assert math.isclose(saved.evaluate("valid")["mae"], ddp[0]["best_valid"], rel_tol=RTOL, abs_tol=ATOL)
    _close(saved.evaluate("test"), ddp[0]["test"], "best.pt re-evaluated")


def test_resume_under_ddp_matches_uninterrupted(runs):
    resumed, full = runs["resumed"], runs["masked"]
    assert resumed[0]["test"] == full[0]["test"] and resumed[1]["test"] == full[1]["test"]
    assert _history(runs["dirs"]["cut"]) == _history(runs["dirs"]["masked"])  # dropout masks of every rank resumed


def test_only_rank_zero_writes_the_run(runs):
    d = runs["dirs"]["plain"]
    assert sorted(os.listdir(d)) == sorted(os.listdir(runs["dirs"]["single_plain"]))
    log = (d / "train.log").read_text()
    assert [log.count(f"epoch {e}/4 ") for e in (1, 2, 3, 4)] == [1, 1, 1, 1]
