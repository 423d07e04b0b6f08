"""Utilities: Hub sharing (model cards, pushes, offline caches)."""
