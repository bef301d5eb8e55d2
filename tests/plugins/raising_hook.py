from mmcore import hookimpl
from mmcore.params import ComponentParams


class P(ComponentParams):
    """x"""


@hookimpl
def register_components(register):
    register("aligner", "half_registered", object, P)  # staged, must not be committed
    raise RuntimeError("boom in the hook")
