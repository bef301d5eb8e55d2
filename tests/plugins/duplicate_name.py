from mmcore import hookimpl
from mmcore.params import ComponentParams


class P(ComponentParams):
    """x"""


class Other:
    """Another identity aligner."""


@hookimpl
def register_components(register):
    register("aligner", "identity", Other, P)  # clashes with the built-in
    register("aligner", "unique_one", Other, P)
