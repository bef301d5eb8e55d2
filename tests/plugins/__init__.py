"""Throwaway plugin modules for plugin-machinery tests (loaded through fake entry points)."""
