"""The Hydra config tree of ``neurocrane train`` (YAML files; see docs/training.md)."""
