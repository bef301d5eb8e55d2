"""The plugin hooks of mmcore (pluggy), in the style of ``llm``'s ``register_models``.

A plugin is a module named by an entry point in the ``mmcore`` group that implements::

    from mmcore import hookimpl

    @hookimpl
    def register_components(register):
        register("aligner", "my_aligner", MyAligner, MyParams)

The host owns the callback; plugins never see the registry itself.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mmcore")
hookimpl = pluggy.HookimplMarker("mmcore")


@hookspec
def register_components(register):
    """Register components by calling ``register(kind, name, factory, params, ...)``."""
