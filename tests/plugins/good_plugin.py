from mmcore import hookimpl
from mmcore.params import ComponentParams

MMCORE_PLUGIN_API = "1.0"


class EchoParams(ComponentParams):
    """An aligner that returns its input (test fixture)."""


class EchoAligner:
    """Echo aligner (never built in these tests)."""


@hookimpl
def register_components(register):
    register("aligner", "echo", EchoAligner, EchoParams)
