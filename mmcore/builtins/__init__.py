"""Built-in components: registered through the same hook as any plugin (see ``plugin.py``)."""
