"""Models: the :class:`CraneConfig` that carries the preprocessing pipeline, the
:class:`BaseModel` interface, and two small reference models.

Importing this package imports transformers (slow); ``import neurocrane`` alone does not.
"""

from neurocrane.models.base import (
    METADATA_KEYS,
    BaseModel,
    ModelLoadError,
    UnknownModelTypeError,
    WeightsMismatchError,
    registered_models,
)
from neurocrane.models.config import CONFIG_SCHEMA_VERSION, CraneConfig, PreTrainedConfig, PretrainedConfig
from neurocrane.models.reference import SEEGTransformer, SEEGTransformerConfig, SpectralModel, SpectralModelConfig

__all__ = [
    "CONFIG_SCHEMA_VERSION",
    "METADATA_KEYS",
    "BaseModel",
    "CraneConfig",
    "ModelLoadError",
    "PreTrainedConfig",
    "PretrainedConfig",
    "SEEGTransformer",
    "SEEGTransformerConfig",
    "SpectralModel",
    "SpectralModelConfig",
    "UnknownModelTypeError",
    "WeightsMismatchError",
    "registered_models",
]
