"""The plugin hooks of mmcore (pluggy), in the style of ``llm``'s ``register_models``.

A plugin is a module named by an entry point in the ``mmcore`` group that implements::

    from mmcore import hookimpl

    @hookimpl
    def register_components(register):
        register("aligner", "my_aligner", MyAligner, MyParams)

The host owns the callback; plugins never see the registry itself.

The same module declares the plugin API it targets, read before its hook is called::

    MMCORE_PLUGIN_API = "1.0"

The core compares it with :data:`PLUGIN_API` (:func:`api_mismatch`) and skips an incompatible plugin,
naming both versions in ``mmcore plugins`` and in unknown-component errors.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mmcore")
hookimpl = pluggy.HookimplMarker("mmcore")

#: The plugin API this core provides, "MAJOR.MINOR": the ``register_components(register)`` hook, the
#: arguments of ``register``, ``mmcore.lazy``/``lazy_exports``, the component protocols and ``BuildContext``.
#: MINOR grows when something is added (a plugin targeting 1.1 needs a core with 1.1 or later);
#: MAJOR grows when something is removed or changed (a plugin targeting 1.x does not load on 2.x).
PLUGIN_API = "1.0"
#: The module attribute, in a plugin's entry-point module, that declares the plugin API it targets.
PLUGIN_API_ATTRIBUTE = "MMCORE_PLUGIN_API"


def parse_api(value: object) -> tuple[int, int] | None:
    """``"1.0"`` -> ``(1, 0)``; None for anything that is not a "MAJOR.MINOR" string of integers."""
    if not isinstance(value, str):
        return None
    parts = value.strip().split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def api_mismatch(target: object, provided: str = PLUGIN_API) -> str | None:
    """Why a plugin that declares ``target`` cannot load on a core providing ``provided``; None if it can.

    Compatible: the same MAJOR, and the plugin's MINOR at most the core's.
    """
    want, have = parse_api(target), parse_api(provided)
    if want is None:
        return f"{PLUGIN_API_ATTRIBUTE} = {target!r} is not a \"MAJOR.MINOR\" string such as \"{provided}\""
    if have is None:  # the core's own constant: a bug, not a plugin fault
        raise ValueError(f"PLUGIN_API {provided!r} is not MAJOR.MINOR")
    if want[0] != have[0] or want[1] > have[1]:
        return f"targets mmcore plugin API {target}, but this core provides plugin API {provided}"
    return None


@hookspec
def register_components(register):
    """Register components by calling ``register(kind, name, factory, params, ...)``."""
