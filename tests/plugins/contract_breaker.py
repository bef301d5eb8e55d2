"""A plugin whose aligner breaks the contract: its forward returns a plain dict, not an AlignerOutput."""

from mmcore import hookimpl
from mmcore.params import ComponentParams


class BreakerParams(ComponentParams):
    """An aligner that returns the wrong type (test fixture)."""


class BreakerAligner:
    def __init__(self, params, ctx):
        pass

    def __call__(self, seqs, valid):
        return dict(seqs)

    def parameters(self):
        return iter(())

    def train(self, mode=True):
        return self

    def eval(self):
        return self

    def named_parameters(self):
        return iter(())


@hookimpl
def register_components(register):
    register("aligner", "breaker", BreakerAligner, BreakerParams)
