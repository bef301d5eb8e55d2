"""Device and backend selection (runs everywhere) and the CUDA/nccl paths (marked ``cuda``).

The selection logic is tested on CPU with ``torch.cuda`` and ``torch.distributed`` stubbed, so the
nccl path is checked by construction without a GPU; the ``cuda`` tests run it for real and skip
with a reason where torch sees no GPU (this project's CI has none).
"""

import math

import pytest
import torch

from mmcore.errors import MmcoreUserError
from mmcore.train import distributed as D

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU; torch.cuda.is_available() is False here")
needs_two_gpus = pytest.mark.skipif(not HAS_CUDA or torch.cuda.device_count() < 2,
                                    reason="needs 2 CUDA GPUs for a 2-process nccl run")


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend torch sees ``n`` CUDA devices (no CUDA call is made)."""

    def install(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return install


def test_cpu_is_cpu_whatever_the_machine():
    assert D.pick_device("cpu") == torch.device("cpu")
    assert D.pick_device("cpu", local_rank=3) == torch.device("cpu")


def test_auto_without_cuda_is_cpu(fake_gpus):
    fake_gpus(0)
    assert D.pick_device("auto") == torch.device("cpu")


def test_auto_with_cuda_takes_the_local_rank_gpu(fake_gpus):
    fake_gpus(4)
    assert D.pick_device("auto") == torch.device("cuda", 0)
    assert D.pick_device("auto", local_rank=3) == torch.device("cuda", 3)


def test_cuda_without_cuda_is_a_clear_error(fake_gpus):
    fake_gpus(0)
    with pytest.raises(MmcoreUserError, match="train.device is 'cuda' but torch sees no CUDA device; use device: auto"):
        D.pick_device("cuda")


def test_more_processes_than_gpus_is_a_clear_error(fake_gpus):
    fake_gpus(2)
    with pytest.raises(MmcoreUserError, match=r"LOCAL_RANK 2 but this node has 2 visible CUDA devices.*-per-node 2"):
        D.pick_device("cuda", local_rank=2)


def test_a_process_that_sees_one_gpu_uses_it(fake_gpus):
    fake_gpus(1)  # e.g. a scheduler that sets CUDA_VISIBLE_DEVICES per task
    assert D.pick_device("auto", local_rank=3) == torch.device("cuda", 0)


def test_backend_is_nccl_on_cuda_and_gloo_on_cpu():
    assert D.backend_for(torch.device("cuda", 1)) == "nccl"
    assert D.backend_for(torch.device("cpu")) == "gloo"


def test_without_torchrun_there_is_no_process_group(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    env = D.init_distributed("cpu")
    assert (env.rank, env.world_size, env.distributed, env.backend) == (0, 1, False, None)
    assert not torch.distributed.is_initialized()


def test_torchrun_on_gpus_joins_with_nccl_on_the_local_rank_gpu(monkeypatch, fake_gpus):
    fake_gpus(4)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(("set_device", dev)))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "6")
    monkeypatch.setenv("LOCAL_RANK", "2")  # second node, third GPU
    env = D.init_distributed("auto")
    assert (env.rank, env.world_size, env.local_rank, env.backend) == (6, 8, 2, "nccl")
    assert env.device == torch.device("cuda", 2)
    assert calls == [("set_device", torch.device("cuda", 2)), ("init", "nccl")]
    assert env.owns_group


def test_torchrun_on_cpu_joins_with_gloo(monkeypatch, fake_gpus):
    fake_gpus(0)
    calls = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = D.init_distributed("auto")
    assert (env.device, env.backend, calls) == (torch.device("cpu"), "gloo", ["gloo"])


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA, so device: cuda is valid here")
def test_run_with_device_cuda_without_cuda_fails_before_training(tmp_path):
    from test_trainer import tiny_spec

    from mmcore.train.run import train_run

    with pytest.raises(MmcoreUserError, match="train.device is 'cuda' but torch sees no CUDA device"):
        train_run(tiny_spec(train={"device": "cuda"}), str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- on a GPU
@pytest.mark.cuda
@needs_cuda
def test_cuda_run_places_model_and_batches_on_the_gpu(tmp_path, monkeypatch):
    from test_trainer import tiny_spec

    from mmcore.train import trainer as trainer_mod
    from mmcore.train.run import train_run

    seen = set()
    real = trainer_mod.Pipeline.total_loss

    def total_loss(self, out, labels, step=None):
        seen.add((out.pred.device.type, labels.device.type, next(self.parameters()).device.type))
        return real(self, out, labels, step)

    monkeypatch.setattr(trainer_mod.Pipeline, "total_loss", total_loss)
    res = train_run(tiny_spec(train={"device": "cuda", "epochs": 2}), str(tmp_path / "run"), progress=False)
    assert seen == {("cuda", "cuda", "cuda")}
    assert all(math.isfinite(v) for v in res["test"].values())


@pytest.mark.cuda
@needs_cuda
def test_cuda_bf16_autocast_matches_fp32(tmp_path):
    from test_precision import BF16_CORR_ATOL, BF16_RTOL, compare_runs

    compare_runs(tmp_path, {"precision": "bf16", "device": "cuda"}, {"device": "cuda"}, rtol=BF16_RTOL,
                 corr_atol=BF16_CORR_ATOL)


@pytest.mark.cuda
@needs_two_gpus
def test_two_nccl_processes_match_one_gpu_process(tmp_path):
    from test_distributed import ATOL, PLAIN, RTOL

    from mmcore.spec import spec_from_dict
    from mmcore.testing.distributed import run_distributed
    from mmcore.train.run import train_run

    cuda_spec = {**PLAIN, "train": {**PLAIN["train"], "device": "cuda"}}
    single = train_run(spec_from_dict(cuda_spec), str(tmp_path / "single"), progress=False)
    ddp = run_distributed(cuda_spec, 2, str(tmp_path / "ddp"), device="cuda")
    for k in ("loss", "mae", "corr"):  # the continuous metrics: a row flipping class is not a path error
        # 10x the CPU tolerance: GPU kernels (atomics in backward, other reduction trees) reorder sums more
        assert math.isclose(ddp[0]["test"][k], single["test"][k], rel_tol=RTOL * 10, abs_tol=ATOL * 10), k
