"""mmcore.capabilities: the one place optional component capabilities are declared, read and checked."""

from __future__ import annotations

import pytest

from mmcore import capabilities
from mmcore.registry import get_registry
from mmcore.testing.contract import ContractError, check_component


class Bare:
    pass


class Full:
    accepts_missing = True
    accepts_batch = True
    output_streams = ["text", "text_unique"]
    anchor = "text"
    has_unused_parameters = True
    contract_skip = {"padding_invariance": "attends over padding by design"}
    contract_no_grad = {"fitter.*": "trained in the fitter step only"}

    def __init__(self):
        self.steps = []

    def alignment_plans(self):
        return {"audio": "plan"}

    def training_phases(self, epochs):
        return ["warmup", "main"] if epochs > 1 else None

    def set_step(self, phase, step):
        self.steps.append((phase, step))


def test_defaults_for_a_component_that_declares_nothing():
    b = Bare()
    assert capabilities.accepts_missing(b) is False and capabilities.accepts_batch(b) is False
    assert capabilities.output_streams(b, ["text", "audio"]) == ["text", "audio"]
    assert capabilities.anchor(b) is None and capabilities.alignment_plans(b) is None
    assert capabilities.training_phases(b, 10) is None
    capabilities.set_step(b, "train", "train")  # a no-op, not an AttributeError
    assert capabilities.has_unused_parameters(b) is False
    assert capabilities.contract_skip(Bare) == {} and capabilities.contract_no_grad(Bare) == {}
    assert capabilities.check_declared(Bare) == []


def test_declared_capabilities_are_read():
    f = Full()
    assert capabilities.accepts_missing(f) and capabilities.accepts_batch(f) and capabilities.has_unused_parameters(f)
    assert capabilities.output_streams(f, ["text"]) == ["text", "text_unique"]
    assert capabilities.anchor(f) == "text" and capabilities.alignment_plans(f)() == {"audio": "plan"}
    assert capabilities.training_phases(f, 5) == ["warmup", "main"]
    capabilities.set_step(f, "main", "fit")
    assert f.steps == [("main", "fit")]
    assert capabilities.check_declared(Full) == [] and capabilities.check_declared(f) == []


@pytest.mark.parametrize("name,value", [("accepts_missing", "yes"), ("accepts_batch", 1), ("output_streams", ["text", 3]),
                                        ("anchor", 1), ("contract_skip", {"padding_invariance": ""}),
                                        ("contract_no_grad", ["fitter.*"]), ("set_step", True),
                                        ("has_unused_parameters", 1)])
def test_a_wrongly_typed_declaration_is_reported(name, value):
    bad = type("Bad", (), {name: value})
    problems = capabilities.check_declared(bad)
    assert len(problems) == 1 and problems[0].startswith(name)


def test_every_registered_component_declares_well_typed_capabilities():
    reg = get_registry()
    for entry in reg.entries():
        if entry.kind == "dataset":
            continue
        assert capabilities.check_declared(entry.load()) == [], f"{entry.kind} {entry.name}"


def test_the_contract_refuses_a_badly_declared_capability(fresh_registry):
    from torch import nn

    import mmcore
    from mmcore.params import NoParams
    from mmcore.protocols import AlignerOutput

    class SloppyParams(NoParams):
        """An aligner whose contract_skip gives no reason (must fail the contract)."""

    @mmcore.register("aligner", "sloppy_test_aligner", params=SloppyParams)
    class SloppyAligner(nn.Module):
        contract_skip = {"padding_invariance": ""}

        def forward(self, seqs, valid):
            return AlignerOutput(dict(seqs), dict(valid), {})

    with pytest.raises(ContractError, match="capabilities.*contract_skip"):
        check_component("aligner", "sloppy_test_aligner")


def _batch_fuser(accepts: bool, reads_labels: bool = False):
    """A mean-pooling fuser that records the batch it was given (and, if told to, cheats with the labels)."""
    import torch
    from torch import nn

    from mmcore.functional import masked_mean
    from mmcore.protocols import FuserOutput

    class BatchFuser(nn.Module):
        accepts_batch = accepts

        def __init__(self, params=None, ctx=None):
            super().__init__()
            self.lin = nn.Linear(16, 16)
            self.out_dim = 16
            self.seen = []

        def forward(self, seqs, valid, batch=None):
            self.seen.append(batch)
            rep = self.lin(torch.stack([masked_mean(x, valid[m]) for m, x in seqs.items()]).sum(0))
            if reads_labels and batch is not None:
                rep = rep + batch.labels.unsqueeze(-1)
            return FuserOutput(rep, {})

    return BatchFuser


@pytest.mark.parametrize("accepts", [True, False])
def test_pipeline_passes_the_batch_only_to_a_fuser_that_accepts_it(accepts):
    from torch import nn

    from mmcore.pipeline import Pipeline
    from mmcore.testing.contract import synthetic_batch

    class Proj(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.lin = nn.Linear(d, 16)

        def forward(self, x, valid):
            return self.lin(x)

    class Identity(nn.Module):
        def forward(self, seqs, valid):
            from mmcore.protocols import AlignerOutput
            return AlignerOutput(dict(seqs), dict(valid), {})

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 1)

        def forward(self, rep):
            return self.lin(rep).squeeze(-1)

    batch = synthetic_batch()
    fuser = _batch_fuser(accepts)()
    pipe = Pipeline({m: Proj(x.shape[-1]) for m, x in batch.features.items()}, Identity(), fuser, Head())
    pipe(batch)
    assert fuser.seen == [batch if accepts else None]


def test_the_contract_refuses_a_fuser_that_predicts_from_the_labels(fresh_registry):
    import mmcore
    from mmcore.params import NoParams

    class CheatParams(NoParams):
        """A fuser that adds the labels to its representation (must fail the contract)."""

    mmcore.register("fuser", "cheat_test_fuser", params=CheatParams)(_batch_fuser(True, reads_labels=True))
    with pytest.raises(ContractError, match="labels unused"):
        check_component("fuser", "cheat_test_fuser")
    mmcore.register("fuser", "honest_test_fuser", params=CheatParams)(_batch_fuser(True))
    check_component("fuser", "honest_test_fuser")
