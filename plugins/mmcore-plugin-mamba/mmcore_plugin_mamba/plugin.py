"""The mmcore hook of the Mamba plugin: registrations only (classes load lazily, so no torch here)."""

from __future__ import annotations

from mmcore import hookimpl, lazy

from .params import BimambaTextCentricParams, InterleavedMambaParams, MambaEncoderParams

_PKG = "mmcore_plugin_mamba"
MMCORE_PLUGIN_API = "1.0"  # the mmcore plugin API this plugin targets (mmcore.hookspecs.PLUGIN_API)


@hookimpl
def register_components(register):
    register("fuser", "interleaved_mamba", lazy(f"{_PKG}.interleaved_mamba", "InterleavedMambaFuser"),
             InterleavedMambaParams)
    register("aligner", "bimamba_text_centric", lazy(f"{_PKG}.bimamba_text_centric", "BimambaTextCentricAligner"),
             BimambaTextCentricParams)
    register("encoder", "mamba", lazy(f"{_PKG}.mamba", "MambaEncoder"), MambaEncoderParams)
