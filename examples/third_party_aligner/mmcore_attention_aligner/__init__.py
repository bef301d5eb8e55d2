"""A third-party mmcore aligner: soft cross-attention onto an anchor modality."""

__version__ = "0.1.0"
