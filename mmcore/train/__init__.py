"""Training: the trainer, checkpoints, distributed helpers, and the ``mmcore run`` glue."""
