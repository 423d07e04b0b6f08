"""The model configuration: a Hugging Face config that carries the preprocessing pipeline.

:class:`CraneConfig` stores the model's :class:`~neurocrane.pipeline.Pipeline` as a plain dict
under ``preprocessing`` (the same dict :meth:`Pipeline.to_dict` writes), together with what the
pipeline expects of its input (sampling rate, channel count, window length). The dict is
validated when the config is built, so a ``config.json`` naming an unknown op, a misspelled
parameter, a newer schema or an import path (``_target_``) fails while loading the config,
before any weights are read. Nothing in a config is ever imported or instantiated by name.

Example:
    >>> from neurocrane.models import CraneConfig
    >>> from neurocrane.preprocessing import CommonAverageReference, ZScore
    >>> cfg = CraneConfig(preprocessing=Pipeline([CommonAverageReference(), ZScore()]).to_dict(),
    ...                   sampling_rate=512.0, n_channels=None)
    >>> cfg.pipeline().fingerprint == Pipeline([CommonAverageReference(), ZScore()]).fingerprint
    True
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar

from neurocrane.batch import SignalSpec
from neurocrane.errors import PipelineFormatError, SchemaVersionError
from neurocrane.pipeline import Identity, Pipeline, pipeline_from_dict

try:  # transformers >= 5 spells it PreTrainedConfig; 4.x only has PretrainedConfig
    from transformers import PreTrainedConfig
except ImportError:  # pragma: no cover - depends on the installed transformers
    from transformers import PretrainedConfig as PreTrainedConfig

PretrainedConfig = PreTrainedConfig

__all__ = ["CraneConfig", "CONFIG_SCHEMA_VERSION", "PreTrainedConfig", "PretrainedConfig", "refuse_import_paths"]

#: Version of the neurocrane fields of ``config.json``; newer files are refused with advice.
CONFIG_SCHEMA_VERSION = 1

_FORBIDDEN_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})

# Keys transformers itself writes or passes that are not dataclass fields of the config.
_HF_EXTRA_KEYS = frozenset(
    {
        "model_type",
        "torch_dtype",
        "num_labels",
        "name_or_path",
        "_name_or_path",
        "_commit_hash",
        "output_attentions",
        "attn_implementation",
        "experts_implementation",
        "per_layer_config",
        "use_cache",
        "tie_word_embeddings",
        "transformers_weights",
    }
)


def refuse_import_paths(obj: Any, path: str = "config") -> None:
    """Raise :class:`PipelineFormatError` if ``obj`` contains an import-path key such as
    ``_target_`` anywhere (configs name registered things only, never code to import)."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key in _FORBIDDEN_KEYS:
                raise PipelineFormatError(
                    f"{path} contains the key {key!r}: neurocrane configs never name import paths "
                    "(instantiating them could run arbitrary code from a downloaded file). Remove it; "
                    "preprocessing steps are named by their registered 'op'."
                )
            refuse_import_paths(value, f"{path}.{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            refuse_import_paths(value, f"{path}[{i}]")


def _json_copy(value: Any, what: str) -> Any:
    """A deep copy made of JSON types only (tuples become lists), or a clear error."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise PipelineFormatError(f"{what} must hold JSON values only (finite numbers, strings, lists, dicts): {err}.") from None


class CraneConfig(PreTrainedConfig):
    """Base configuration of every neurocrane model.

    Subclasses add their architecture fields as annotated class attributes (transformers turns
    config classes into dataclasses) and set a unique ``model_type``.

    Args:
        preprocessing: The pipeline as a dict (:meth:`Pipeline.to_dict`); ``None`` means no
            preprocessing (an identity pipeline).
        sampling_rate: Sampling rate (Hz) the pipeline expects its input at, or ``None`` for any.
        n_channels: Channel count the model expects, or ``None`` when it accepts any.
        context_length: Window length in seconds the model was trained on (informative, and
            used to describe the pipeline).
        training_summary: Free-form JSON summary of how the model was trained (data, steps,
            metrics); shown on the model card.
        neurocrane_config_version: Schema version of these fields (newer ones are refused).
        model_package: Root package defining the model class when it is not neurocrane; used
            only to say what to install in errors, never imported.

    Raises:
        PipelineError: (subclasses of) when ``preprocessing`` is not a loadable pipeline, the
            config names an import path or carries an unknown field.

    Example:
        >>> CraneConfig(preprocessing=Pipeline([ZScore()]).to_dict(), sampling_rate=2048.0).input_spec
    """

    model_type: ClassVar[str] = "neurocrane"

    preprocessing: dict | None = None
    sampling_rate: float | None = None
    n_channels: int | None = None
    context_length: float | None = None
    training_summary: dict | None = None
    neurocrane_config_version: int = CONFIG_SCHEMA_VERSION
    model_package: str | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        self._check_extra_keys(kwargs)
        super().__post_init__(**kwargs)
        self._check_fields()

    # -- validation -----------------------------------------------------------------------
    def _check_extra_keys(self, kwargs: dict[str, Any]) -> None:
        refuse_import_paths(kwargs)
        given_type = kwargs.get("model_type")
        if given_type is not None and given_type != type(self).model_type:
            raise PipelineFormatError(
                f"config.json says model_type {given_type!r} but {type(self).__name__} is "
                f"{type(self).model_type!r}; load it with crane.BaseModel.from_pretrained (which "
                "picks the right class) or with the matching model class."
            )
        unknown = sorted(k for k in kwargs if k not in _HF_EXTRA_KEYS)
        if unknown:
            names = [f.name for f in fields(self) if not f.name.startswith("_")]
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, names, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise PipelineFormatError(
                f"{type(self).__name__}: unknown field(s) {', '.join(hints)}. A misspelled field "
                "would silently fall back to its default, so it is refused. Known fields: "
                f"{', '.join(sorted(names))}."
            )

    def _check_fields(self) -> None:
        version = self.neurocrane_config_version
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise PipelineFormatError(
                f"neurocrane_config_version must be a positive integer; got {version!r}."
            )
        if version > CONFIG_SCHEMA_VERSION:
            from neurocrane import __version__

            raise SchemaVersionError(
                f"this model config uses neurocrane config schema version {version}; neurocrane "
                f"{__version__} reads versions up to {CONFIG_SCHEMA_VERSION}. Upgrade neurocrane "
                "(pip install -U neurocrane) to load it."
            )
        refuse_import_paths(
            {k: v for k, v in self.__dict__.items() if not isinstance(v, PreTrainedConfig)}
        )
        if self.preprocessing is not None:
            if not isinstance(self.preprocessing, Mapping):
                raise PipelineFormatError(
                    f"'preprocessing' must be a pipeline dict (Pipeline.to_dict()); got "
                    f"{type(self.preprocessing).__name__}. Assign model.preprocess_pipeline = Pipeline(...)."
                )
            self.preprocessing = _json_copy(dict(self.preprocessing), "'preprocessing'")
            pipeline_from_dict(self.preprocessing)  # raises the precise PipelineError
        if self.training_summary is not None:
            if not isinstance(self.training_summary, Mapping):
                raise PipelineFormatError(
                    f"'training_summary' must be a dict; got {type(self.training_summary).__name__}."
                )
            self.training_summary = _json_copy(dict(self.training_summary), "'training_summary'")
        if self.sampling_rate is not None:
            rate = float(self.sampling_rate)
            if not math.isfinite(rate) or rate <= 0:
                raise PipelineFormatError(f"'sampling_rate' must be a positive number of Hz; got {self.sampling_rate!r}.")
            self.sampling_rate = rate
        if self.n_channels is not None and (
            isinstance(self.n_channels, bool) or not isinstance(self.n_channels, int) or self.n_channels < 1
        ):
            raise PipelineFormatError(f"'n_channels' must be a positive integer or null; got {self.n_channels!r}.")
        if self.context_length is not None:
            length = float(self.context_length)
            if not math.isfinite(length) or length <= 0:
                raise PipelineFormatError(f"'context_length' must be a positive number of seconds; got {self.context_length!r}.")
            self.context_length = length

    # -- views ------------------------------------------------------------------------------
    def pipeline(self) -> Pipeline:
        """A fresh :class:`Pipeline` built from ``preprocessing`` (identity when ``None``)."""
        if self.preprocessing is None:
            return Pipeline([Identity()])
        return pipeline_from_dict(copy.deepcopy(self.preprocessing))

    def set_pipeline(self, pipeline: Pipeline) -> None:
        """Store ``pipeline`` as this config's ``preprocessing`` dict."""
        if not isinstance(pipeline, Pipeline):
            raise PipelineFormatError(
                f"a model's preprocessing must be a neurocrane Pipeline; got {type(pipeline).__name__}. "
                "Wrap transforms with Pipeline([...])."
            )
        self.preprocessing = _json_copy(pipeline.to_dict(), "'preprocessing'")

    @property
    def input_spec(self) -> SignalSpec:
        """What the pipeline expects as input: ``(batch, n_channels, time)`` at ``sampling_rate``."""
        n_times = None
        if self.context_length is not None and self.sampling_rate is not None:
            n_times = round(self.context_length * self.sampling_rate)
        return SignalSpec(shape=(None, self.n_channels, n_times), sampling_rate=self.sampling_rate)
