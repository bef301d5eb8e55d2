"""A plugin module that registers with @mmcore.register at import time (and has the hook too)."""

import mmcore
from mmcore import hookimpl
from mmcore.params import ComponentParams


class DecoParams(ComponentParams):
    """An aligner registered by decorator at import (test fixture)."""


@mmcore.register("aligner", "decorated_at_import", params=DecoParams)
class DecoratedAligner:
    """Never built in these tests."""


@hookimpl
def register_components(register):
    pass
