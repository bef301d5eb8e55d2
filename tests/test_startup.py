"""Startup (issue 17): the run's AdamW never imports torch._dynamo and steps exactly as torch's AdamW."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from test_trainer import tiny_spec

from mmcore.data.load import load_dataset
from mmcore.train import trainer as trainer_mod
from mmcore.train.step import EagerAdamW, make_optimizer


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))


def _steps(model, opt, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        opt.zero_grad(set_to_none=True)
        model(torch.randn(8, 6, generator=g)).pow(2).mean().backward()
        for group in opt.param_groups:
            group["lr"] = 1e-2 / (1 + i)  # as a scheduler or a phase's lr scale would
        opt.step()


def test_eager_adamw_equals_torch_adamw_bit_for_bit():
    ours, theirs = _model(0), _model(0)
    a = make_optimizer(ours.parameters(), 1e-2, 0.05, compiled=False)
    b = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.05)
    assert type(a) is EagerAdamW
    _steps(ours, a, 5, seed=1)
    _steps(theirs, b, 5, seed=1)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p, q)
    # the same state dict (foreach/fused/capturable settings included): checkpoints move between the classes
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert all(torch.equal(sa["state"][k][n], sb["state"][k][n]) for n in sb["state"][k])
    # continue each from the other's state: still equal
    a2, b2 = EagerAdamW(ours.parameters()), torch.optim.AdamW(theirs.parameters())
    a2.load_state_dict(sb)
    b2.load_state_dict(sa)
    _steps(ours, a2, 3, seed=2)
    _steps(theirs, b2, 3, seed=2)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p, q)


def test_a_compiled_model_keeps_torchs_adamw():
    assert type(make_optimizer(_model(0).parameters(), 1e-3, 0.0, compiled=True)) is torch.optim.AdamW


def test_step_hooks_and_grad_mode_as_torch():
    model = _model(0)
    opt = EagerAdamW(model.parameters())
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: seen.append("post"))
    model(torch.randn(2, 6)).sum().backward()
    opt.step()
    assert seen == ["pre", "post"] and torch.is_grad_enabled()


def test_an_epoch_of_the_trainer_equals_torchs_adamw_bit_for_bit(tmp_path):
    rs = tiny_spec(train={"num_threads": 1})
    data = load_dataset(rs)
    ours = trainer_mod.Trainer.for_training(rs, data, str(tmp_path / "a"), progress=False)
    assert type(ours.optimizer) is EagerAdamW
    ours._train_epoch(0, ours.phases[0])
    theirs = trainer_mod.Trainer.for_training(rs, data, str(tmp_path / "b"), progress=False)
    theirs.optimizer = torch.optim.AdamW(theirs.model.parameters(), lr=rs.spec.train.lr,
                                         weight_decay=rs.spec.train.weight_decay)
    theirs._train_epoch(0, theirs.phases[0])
    a, b = ours.model.state_dict(), theirs.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_run_never_imports_dynamo(tmp_path):
    """``mmcore run`` through its first epoch, checkpoints included, in a fresh interpreter."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "modalities: {text: {}, audio: {}}\nmodel: {d_model: 8}\nencoders: {default: {name: linear}}\n"
        "fuser: {name: concat_pool}\nhead: {name: regression_mlp}\n"
        "data: {name: synthetic, params: {n_train: 32, n_valid: 16, n_test: 16}}\ntrain: {epochs: 1, batch_size: 16}\n")
    code = ("import sys, mmcore.cli\n"
            f"code = mmcore.cli.main(['-q', 'run', {str(spec)!r}, '--out', {str(tmp_path / 'run')!r}, '--no-progress'])\n"
            "print('DYNAMO', 'torch._dynamo' in sys.modules, code)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "DYNAMO False 0" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("training", [True, False])
def test_mult_cross_modal_padding_mask_equals_key_padding_mask_bit_for_bit(training):
    """The MulT block passes padding as an expanded attn_mask (no sympy import at the first batch); outputs and
    gradients equal torch's key_padding_mask path exactly, rows of different lengths and heads > 1 included."""
    from mmcore.builtins.fusers import CrossModalBlock

    torch.manual_seed(0)
    block = CrossModalBlock(16, 4, dropout=0.0).train(training)
    target, source = torch.randn(3, 5, 16), torch.randn(3, 7, 16, requires_grad=True)
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[0, 4:], valid[2, 1:] = False, False
    kv = block.norm_kv(source)
    outs = [block.attn(block.norm_q(target), kv, kv, need_weights=False, **mask)[0]
            for mask in ({"attn_mask": block.padding_mask(valid, 5)}, {"key_padding_mask": ~valid})]
    grads = [torch.autograd.grad(o.square().sum(), source, retain_graph=True)[0] for o in outs]
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
