"""Helpers for testing-time utilities (submission packing, ...)."""
