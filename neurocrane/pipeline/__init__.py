"""The graph core: Transform nodes, the op registry, Pipelines and Branches, and their
serialization. No signal processing lives here (see :mod:`neurocrane.preprocessing`)."""

from neurocrane.pipeline.io import (
    FORMAT,
    SCHEMA_VERSION,
    load_pipeline,
    pipeline_from_dict,
    pipeline_to_dict,
    register_migration,
    save_pipeline,
)
from neurocrane.pipeline.pipeline import Branch, Pipeline
from neurocrane.pipeline.transform import (
    Identity,
    Transform,
    as_batch,
    get_transform_class,
    registered_ops,
    restore_kind,
    unregister_transform,
)

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "Branch",
    "Identity",
    "Pipeline",
    "Transform",
    "as_batch",
    "get_transform_class",
    "load_pipeline",
    "pipeline_from_dict",
    "pipeline_to_dict",
    "register_migration",
    "registered_ops",
    "restore_kind",
    "save_pipeline",
    "unregister_transform",
]
