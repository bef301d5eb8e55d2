"""A module named by an entry point that implements no hook."""
