"""The mmcore hook: registers the aligner (imported lazily, so listing it never imports torch)."""

from mmcore import hookimpl, lazy

from .params import AttentionAlignerParams

MMCORE_PLUGIN_API = "1.0"  # the mmcore plugin API this plugin targets (mmcore.hookspecs.PLUGIN_API)


@hookimpl
def register_components(register):
    register("aligner", "attention", lazy("mmcore_attention_aligner.aligner", "AttentionAligner"),
             AttentionAlignerParams)
