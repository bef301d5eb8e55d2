"""The mmcore hook: registers the aligner (imported lazily, so listing it never imports torch)."""

from mmcore import hookimpl, lazy

from .params import AttentionAlignerParams


@hookimpl
def register_components(register):
    register("aligner", "attention", lazy("mmcore_attention_aligner.aligner", "AttentionAligner"),
             AttentionAlignerParams)
