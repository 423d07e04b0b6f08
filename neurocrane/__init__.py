"""neurocrane: train, evaluate and share foundation models of intracranial brain recordings.

Preprocessing is data, not code: every step is a validated, serializable
:class:`~neurocrane.pipeline.Transform`, steps compose into a :class:`~neurocrane.pipeline.Pipeline`,
and the pipeline travels inside a model's Hugging Face config.

Example:
    >>> import neurocrane as crane
    >>> pipe = crane.Pipeline([crane.preprocessing.CommonAverageReference(), crane.preprocessing.ZScore()])
"""

__version__ = "0.1.0"

from neurocrane import errors, preprocessing  # noqa: E402  (preprocessing registers the built-in ops)
from neurocrane.batch import NeuralBatch, SignalSpec  # noqa: E402
from neurocrane.errors import NeuroCraneError  # noqa: E402
from neurocrane.pipeline import Branch, Identity, Pipeline, Transform, registered_ops  # noqa: E402

__all__ = [
    "__version__",
    "Branch",
    "Identity",
    "NeuralBatch",
    "NeuroCraneError",
    "Pipeline",
    "SignalSpec",
    "Transform",
    "errors",
    "preprocessing",
    "registered_ops",
]

# Heavy parts (transformers, Lightning) load on first use, so `import neurocrane` stays fast.
_LAZY_EXPORTS = {
    "BaseModel": "neurocrane.models",
    "CraneConfig": "neurocrane.models",
    "models": "neurocrane.models",
    "LightningModule": "neurocrane.training",
    "train": "neurocrane.training",
    "training": "neurocrane.training",
}
__all__ += ["BaseModel", "CraneConfig", "models", "LightningModule", "train", "training"]


def __getattr__(name: str):
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'neurocrane' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value
