"""Registrations of the Mamba plugin (filled in as components land)."""

from mmcore import hookimpl


@hookimpl
def register_components(register):
    pass
