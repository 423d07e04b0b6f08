"""Placeholder: filled in by the preprocessing-operations work (issue 3)."""

__all__: list[str] = []
