"""The model interface: :class:`BaseModel`, a Hugging Face ``PreTrainedModel`` whose
preprocessing is the :class:`~neurocrane.pipeline.Pipeline` stored in its config.

* ``model(x, sampling_rate=..., labels=...)`` (or ``model(**batch_dict)``) runs
  :meth:`BaseModel.preprocess` (the stored pipeline, checked against the input the config
  expects), then ``forward`` through ``nn.Module.__call__`` so PyTorch hooks keep working.
* A batch records the fingerprint of every pipeline applied to it, so preprocessing never
  runs twice (a batch whose recording part already ran resumes at the window part).
* ``BaseModel.from_pretrained(...)`` picks the subclass named by ``model_type``; loading
  reads safetensors only, validates the config (pipeline included) before any weight is read,
  and refuses missing, unexpected or mis-shaped weights.

Subclasses implement ``forward``, ``compute_loss`` and ``encode`` (the layer-wise features
behind :meth:`BaseModel.extract_features`), and set ``config_class`` to a
:class:`~neurocrane.models.config.CraneConfig` subclass with a unique ``model_type``.
"""

from __future__ import annotations

import math
import shutil
import uuid
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PreTrainedModel

from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import InputError, NeuroCraneError, PipelineFormatError, SpecError
from neurocrane.models.config import CraneConfig
from neurocrane.pipeline import Pipeline, as_batch

__all__ = [
    "BaseModel",
    "ModelLoadError",
    "UnknownModelTypeError",
    "WeightsMismatchError",
    "registered_models",
    "METADATA_KEYS",
]

#: Keyword arguments of ``model(...)`` that describe the input rather than feed ``forward``.
METADATA_KEYS = ("sampling_rate", "channel_names", "channel_positions", "channel_mask", "axes", "frequencies")

_HUB_KEYS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")

_MODEL_REGISTRY: dict[str, type[BaseModel]] = {}


class ModelLoadError(NeuroCraneError, OSError):
    """A saved model cannot be loaded: files missing, incomplete or in a refused format."""


class UnknownModelTypeError(NeuroCraneError, KeyError):
    """A config names a ``model_type`` that no imported model class registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WeightsMismatchError(NeuroCraneError, ValueError):
    """Saved weights do not match the model: keys missing, unexpected or of the wrong shape."""


def registered_models() -> dict[str, type[BaseModel]]:
    """All registered model classes, ``model_type`` → class."""
    return dict(sorted(_MODEL_REGISTRY.items()))


def _same_definition(a: type, b: type) -> bool:
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def _register_model(cls: type[BaseModel]) -> None:
    config_class = cls.config_class
    if not (isinstance(config_class, type) and issubclass(config_class, CraneConfig)):
        raise TypeError(
            f"{cls.__qualname__}.config_class must be a CraneConfig subclass; got {config_class!r}."
        )
    inherited = any(getattr(base, "config_class", None) is config_class for base in cls.__mro__[1:])
    if inherited:
        return  # a subclass reusing its parent's config: the parent owns the model_type
    model_type = config_class.model_type
    if not model_type or model_type == CraneConfig.model_type:
        raise TypeError(
            f"{config_class.__qualname__} must set its own model_type (e.g. "
            f"model_type: ClassVar[str] = 'my_lab_{cls.__name__.lower()}'); it is how a saved "
            "config finds its model class."
        )
    existing = _MODEL_REGISTRY.get(model_type)
    if existing is not None and existing is not cls and not _same_definition(existing, cls):
        raise TypeError(
            f"model_type {model_type!r} is already registered by {existing.__module__}."
            f"{existing.__qualname__}; give {cls.__qualname__} its own config class and model_type."
        )
    _MODEL_REGISTRY[model_type] = cls
    AutoConfig.register(model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, cls, exist_ok=True)


def _scalar_rate(value: Any) -> float | None:
    """A sampling rate from a float, or the per-sample tensor/list a DataLoader collates."""
    if value is None or isinstance(value, int | float):
        return value
    rates = torch.as_tensor(value).reshape(-1)
    if rates.numel() == 0:
        raise InputError("sampling_rate is empty; give one rate in Hz.")
    if not bool((rates == rates[0]).all()):
        raise InputError(
            f"samples in one batch have different sampling rates ({sorted(set(rates.tolist()))} Hz); "
            "batch recordings of the same rate together (session batching) or resample them first."
        )
    return float(rates[0])


def _rate_equal(a: float | None, b: float | None) -> bool:
    return a is None or b is None or math.isclose(a, b, rel_tol=1e-9)


class BaseModel(PreTrainedModel, ABC):
    """Base class of every neurocrane model (SPEC §3.1).

    Subclasses implement:
        * ``forward(neural_data, labels=None, **kwargs) -> dict`` with ``logits``,
          ``hidden_states`` and ``loss`` (when labels are given or a loss is requested);
          ``neural_data`` is the *preprocessed* :class:`NeuralBatch`.
        * ``compute_loss(outputs, labels=None, **kwargs) -> Tensor``.
        * ``encode(batch, layer_ids=None) -> {"layer_0": ..., ..., "final": ...}`` on a
          preprocessed batch; :meth:`extract_features` preprocesses and calls it.

    and set ``config_class`` to a :class:`CraneConfig` subclass with its own ``model_type``
    (defining the class registers it, also with ``transformers.AutoModel``).

    Example:
        >>> model = crane.BaseModel.from_pretrained("lab-a/seeg-foundation-v1")
        >>> print(model.preprocess_pipeline.describe())
        >>> feats = model.extract_features(x, sampling_rate=2048.0)   # preprocessing included
        >>> out = model(x, sampling_rate=2048.0, labels=y)            # {"loss", "logits", ...}
    """

    config_class = CraneConfig
    base_model_prefix = "neurocrane"
    main_input_name = "neural_data"
    _MANDATORY = ("forward", "compute_loss", "encode")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.config_class is not CraneConfig or "config_class" in cls.__dict__:
            _register_model(cls)

    def __init__(self, config: CraneConfig, *args: Any, **kwargs: Any) -> None:
        if not isinstance(config, CraneConfig):
            raise TypeError(
                f"{type(self).__name__} needs a CraneConfig (got {type(config).__name__}); build one with "
                f"{type(self).config_class.__name__}(...) or load with {type(self).__name__}.from_pretrained(...)."
            )
        super().__init__(config, *args, **kwargs)
        self._crane_pipeline: Pipeline | None = None
        self._crane_pipeline_key: Any = None

    # -- the stored pipeline ---------------------------------------------------------------
    @property
    def preprocess_pipeline(self) -> Pipeline:
        """The preprocessing :class:`Pipeline`, rebuilt from ``config.preprocessing`` (cached;
        rebuilt when the config's dict changes). Assigning a Pipeline updates the config."""
        key = self.config.preprocessing
        if self._crane_pipeline is None or self._crane_pipeline_key != key:
            self._crane_pipeline = self.config.pipeline()
            self._crane_pipeline_key = None if key is None else _deep_copy_json(key)
        return self._crane_pipeline

    @preprocess_pipeline.setter
    def preprocess_pipeline(self, pipeline: Pipeline) -> None:
        self.config.set_pipeline(pipeline)
        self._crane_pipeline = Pipeline(list(pipeline.steps))
        self._crane_pipeline_key = _deep_copy_json(self.config.preprocessing)

    @property
    def input_spec(self) -> SignalSpec:
        """What the model expects as input (from the config): channels, rate, window length."""
        return self.config.input_spec

    # -- preprocessing ---------------------------------------------------------------------
    def preprocess(self, neural_data: torch.Tensor | NeuralBatch, **metadata: Any) -> NeuralBatch:
        """Run the stored pipeline (in the model's train/eval mode) on input that has not had it.

        Args:
            neural_data: ``(batch, channels, time)`` or ``(channels, time)`` float tensor, or a
                :class:`NeuralBatch`.
            **metadata: For a tensor: ``sampling_rate``, ``channel_names``,
                ``channel_positions``, ``channel_mask``.

        Returns:
            The preprocessed :class:`NeuralBatch`, stamped with the pipeline fingerprint. A
            batch already stamped is returned unchanged (preprocessing never runs twice).

        Raises:
            InputError: wrong rank, missing sampling rate, or a rate / channel count other
                than the config expects (unless the pipeline maps both to the same output,
                e.g. with a resampling step).
            SpecError: the data does not fit a pipeline step.
        """
        batch = self._as_batch(neural_data, metadata)
        pipeline = self.preprocess_pipeline
        if pipeline.fingerprint in batch.applied:
            return batch
        self.check_input(batch)
        return pipeline(batch, training=self.training)

    def check_input(self, batch: NeuralBatch) -> None:
        """Check a (not yet preprocessed) batch against what the config says the pipeline
        expects. Called by :meth:`preprocess`; subclasses may extend it.

        A sampling rate or channel count other than the expected one is accepted only when the
        pipeline turns both into the same output (rate, frequencies, channel count), e.g.
        because it starts with a resampling or fixed-size electrode-selection step.
        """
        expected = self.config.input_spec
        pipeline = self.preprocess_pipeline
        start = pipeline.resume_point(batch)
        remaining = pipeline[start:] if start else pipeline
        if start == 0:
            if expected.sampling_rate is not None and batch.sampling_rate is None:
                raise InputError(
                    f"{type(self).__name__} expects input sampled at {expected.sampling_rate:g} Hz but "
                    "no sampling_rate was given; pass sampling_rate=... (Hz) with the tensor."
                )
            rate_ok = _rate_equal(expected.sampling_rate, batch.sampling_rate)
            channels_ok = expected.n_channels is None or expected.n_channels == batch.n_channels
            if rate_ok and channels_ok:
                return
        else:
            rate_ok = channels_ok = False
        try:
            actual_out = remaining.output_spec(batch.spec, training=self.training)
        except SpecError as err:
            err.add_note(f"while checking the input of {type(self).__name__} against its preprocessing pipeline")
            raise
        expected_out = pipeline.output_spec(expected, training=self.training)
        problems = []
        if not _rate_equal(expected_out.sampling_rate, actual_out.sampling_rate) or (
            expected_out.frequencies is not None and actual_out.frequencies != expected_out.frequencies
        ):
            problems.append(
                f"sampling rate: the model expects {expected.sampling_rate:g} Hz input, got "
                f"{batch.sampling_rate:g} Hz, and its pipeline does not resample. Resample the "
                f"recording to {expected.sampling_rate:g} Hz first (or give the model a pipeline "
                "that starts with a resampling step)."
                if start == 0 and not rate_ok
                else f"after the steps already applied the data is at {actual_out.sampling_rate} Hz "
                f"(frequencies {actual_out.frequencies}), but the model expects "
                f"{expected_out.sampling_rate} Hz (frequencies {expected_out.frequencies})."
            )
        if expected_out.n_channels is not None and actual_out.n_channels not in (None, expected_out.n_channels):
            problems.append(
                f"channels: the model expects {expected.n_channels} channels, got {batch.n_channels}. "
                "Select the channels it was trained on (or a model whose config has n_channels=None "
                "accepts any count)."
            )
        if problems:
            raise InputError(f"{type(self).__name__}: input does not match the model: " + " ".join(problems))

    def _as_batch(self, neural_data: Any, metadata: dict[str, Any]) -> NeuralBatch:
        if neural_data is None:
            raise InputError(
                f"{type(self).__name__}: no input; call model(neural_data, sampling_rate=...) or "
                "model(**batch) with a 'neural_data' entry."
            )
        metadata = {k: v for k, v in metadata.items() if v is not None}
        if "sampling_rate" in metadata:
            metadata["sampling_rate"] = _scalar_rate(metadata["sampling_rate"])
        if isinstance(neural_data, NeuralBatch):
            if metadata:
                raise InputError(
                    f"metadata {sorted(metadata)} given with a NeuralBatch, which carries its own; "
                    "use batch.replace(...) to change it."
                )
            batch = neural_data
        else:
            batch, _ = as_batch(neural_data, **metadata)
        if batch.channel_positions is not None and batch.channel_positions.device != batch.device:
            batch = batch.replace(channel_positions=batch.channel_positions.to(batch.device))
        return batch

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Preprocess, then run ``forward`` through ``nn.Module.__call__`` (hooks included).

        Accepts ``model(tensor, sampling_rate=..., labels=...)``, ``model(neural_batch)`` and
        ``model(**batch_dict)`` with ``neural_data`` plus metadata keys; other keys go to
        ``forward``. ``attention_mask`` is taken as the channel mask when no
        ``channel_mask`` is given.
        """
        if args:
            neural_data, args = args[0], args[1:]
            if "neural_data" in kwargs:
                raise InputError("neural_data given both positionally and by keyword.")
        else:
            neural_data = kwargs.pop("neural_data", None)
        metadata = {k: kwargs.pop(k) for k in METADATA_KEYS if k in kwargs}
        if metadata.get("channel_mask") is None and kwargs.get("attention_mask") is not None:
            metadata["channel_mask"] = kwargs.pop("attention_mask")
        batch = self.preprocess(neural_data, **metadata)
        return super().__call__(batch, *args, **kwargs)

    def extract_features(
        self,
        neural_data: torch.Tensor | NeuralBatch,
        layer_ids: list[int] | None = None,
        **metadata: Any,
    ) -> dict[str, torch.Tensor]:
        """Representations of every (or the chosen) layer, with preprocessing applied.

        Args:
            neural_data: Raw (cleaned) data, as for calling the model.
            layer_ids: Layer indices to return (``0`` = embeddings; negatives count from the
                end); ``None`` returns all. ``"final"`` is always included.
            **metadata: ``sampling_rate``, ``channel_names``, ``channel_mask``, ...

        Returns:
            ``{"layer_0": ..., "layer_1": ..., "final": ...}``.

        Example:
            >>> feats = model.extract_features(x, sampling_rate=512.0, layer_ids=[0, -1])
        """
        if layer_ids is not None:
            if isinstance(layer_ids, int) or not all(isinstance(i, int) for i in layer_ids):
                raise InputError(f"layer_ids must be a list of ints (e.g. [0, 2]) or None; got {layer_ids!r}.")
        if "attention_mask" in metadata and metadata.get("channel_mask") is None:
            metadata["channel_mask"] = metadata.pop("attention_mask")
        metadata = {k: v for k, v in metadata.items() if k in METADATA_KEYS}
        batch = self.preprocess(neural_data, **metadata)
        return self.encode(batch, layer_ids=layer_ids)

    # -- what subclasses implement ------------------------------------------------------------
    @abstractmethod
    def forward(self, neural_data: NeuralBatch, labels: torch.Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
        """Forward pass on a preprocessed batch; returns ``logits``, ``hidden_states`` and
        ``loss`` when labels are given (or the objective needs none and a loss is requested)."""

    @abstractmethod
    def compute_loss(self, outputs: dict[str, Any], labels: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """The training loss from ``forward``'s outputs (and labels when the task has them)."""

    @abstractmethod
    def encode(self, batch: NeuralBatch, layer_ids: list[int] | None = None) -> dict[str, torch.Tensor]:
        """Layer-wise representations of a preprocessed batch (see :meth:`extract_features`)."""

    # -- saving -------------------------------------------------------------------------------
    def _init_weights(self, module: torch.nn.Module) -> None:
        # transformers builds loaded models on the meta device and calls this for weights the
        # checkpoint lacks (only reachable with strict=False): use PyTorch's own defaults.
        if module is not self and hasattr(module, "reset_parameters"):
            module.reset_parameters()
        elif module is not self and hasattr(module, "_reset_parameters"):
            module._reset_parameters()

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """Save config (with the pipeline), safetensors weights and a model card, atomically.

        Everything is written to a hidden sibling folder first and moved into place at the
        end, so a crash mid-save leaves the previous content (or nothing), never a half model.

        Args:
            save_directory: Target folder (created; replaced when it holds an older save).
            *args, **kwargs: As ``PreTrainedModel.save_pretrained`` (``push_to_hub`` aside:
                use :meth:`push_to_hub`). ``safe_serialization=False`` (pickle) is refused.
        """
        if kwargs.pop("safe_serialization", True) is False:
            raise ModelLoadError("neurocrane saves weights as safetensors only; pickle checkpoints are refused.")
        if kwargs.pop("push_to_hub", False):
            raise ModelLoadError(
                "save_pretrained(push_to_hub=True) is not supported; call model.push_to_hub(repo_id), "
                "which also writes the model card."
            )
        from neurocrane.utils.hub import write_model_card

        target = Path(save_directory)
        if target.exists() and not target.is_dir():
            raise FileExistsError(f"{str(target)!r} exists and is not a folder; choose another save_directory.")
        target.parent.mkdir(parents=True, exist_ok=True)
        self._stamp_config()
        tmp = target.parent / f".{target.name}.saving-{uuid.uuid4().hex[:8]}"
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        try:
            super().save_pretrained(tmp, *args, **kwargs)
            write_model_card(self, tmp / "README.md")
            if target.exists():
                target.rename(old)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not target.exists():
                old.rename(target)
            raise
        shutil.rmtree(old, ignore_errors=True)

    def _stamp_config(self) -> None:
        package = type(self).__module__.split(".")[0]
        self.config.model_package = None if package in ("neurocrane", "__main__", "__mp_main__") else package

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload the model (config with pipeline, safetensors weights, model card) to the Hub
        in one commit; see :func:`neurocrane.utils.hub.push_to_hub` for the arguments."""
        from neurocrane.utils.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args: Any, **kwargs: Any) -> Any:
        """Load a saved model (local folder or Hub repo id), choosing the right subclass.

        Works on ``BaseModel`` itself (the class is looked up by the config's ``model_type``)
        and on any subclass (which must match the saved type). Loading is safe and strict:

        * only ``model.safetensors`` weights are read (no pickle, ``weights_only=False`` and
          ``trust_remote_code=True`` are refused);
        * the config, pipeline included, is validated before any weight is read, so an unknown
          op, misspelled field, newer schema or ``_target_`` key fails early;
        * missing, unexpected or mis-shaped weights raise :class:`WeightsMismatchError`
          (``strict=False`` downgrades that to a warning, e.g. to load an encoder under a new head).

        Args:
            pretrained_model_name_or_path: Folder or Hub repo id (``HF_HUB_OFFLINE=1`` uses the
                local Hub cache only).
            strict: Refuse weights that do not match exactly (default ``True``).
            **kwargs: Hub arguments (``revision``, ``cache_dir``, ``local_files_only``, ``token``),
                config overrides, and other ``PreTrainedModel.from_pretrained`` arguments.

        Example:
            >>> model = crane.BaseModel.from_pretrained("lab-a/seeg-foundation-v1")
        """
        strict = kwargs.pop("strict", True)
        output_loading_info = kwargs.pop("output_loading_info", False)
        if kwargs.get("weights_only", True) is False:
            raise ModelLoadError("weights_only=False would unpickle arbitrary objects; neurocrane loads safetensors only.")
        if kwargs.get("use_safetensors", True) is False:
            raise ModelLoadError("use_safetensors=False is refused: neurocrane loads safetensors weights only (no pickle).")
        if kwargs.pop("trust_remote_code", False):
            raise ModelLoadError("trust_remote_code=True is refused: neurocrane models never run code from a download.")
        for refused in ("gguf_file", "from_tf", "from_flax"):
            if kwargs.get(refused):
                raise ModelLoadError(f"{refused} is not supported by neurocrane models (safetensors only).")
        kwargs["use_safetensors"] = True
        hub = {k: kwargs[k] for k in _HUB_KEYS if k in kwargs}
        where = str(pretrained_model_name_or_path)

        config = kwargs.pop("config", None)
        if config is None:
            config_dict = _load_config_dict(pretrained_model_name_or_path, hub)
            model_cls = _resolve_class(cls, config_dict, where)
            overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _config_field_names(model_cls.config_class)}
            config_dict.update(overrides)
            try:
                config = model_cls.config_class.from_dict(config_dict)
            except NeuroCraneError as err:
                err.add_note(f"while loading the config of {where!r} (no weights were read)")
                raise
        else:
            if not isinstance(config, CraneConfig):
                raise TypeError(f"config must be a CraneConfig; got {type(config).__name__}.")
            model_cls = cls if cls is not BaseModel else _resolve_class(cls, {"model_type": config.model_type}, where)
            if not isinstance(config, model_cls.config_class):
                raise UnknownModelTypeError(
                    f"{model_cls.__name__} needs a {model_cls.config_class.__name__}; got {type(config).__name__}."
                )
        saved_shapes = _check_weights_file(pretrained_model_name_or_path, hub, where)
        if saved_shapes is not None and not kwargs.get("ignore_mismatched_sizes"):
            _compare_with_saved(model_cls, config, saved_shapes, where, strict)
        try:
            model, info = super(BaseModel, model_cls).from_pretrained(
                pretrained_model_name_or_path, *model_args, config=config, output_loading_info=True, **kwargs
            )
        except RuntimeError as err:
            if "size mismatch" in str(err) or "ignore_mismatched_sizes" in str(err):
                raise WeightsMismatchError(f"weights of {where!r} do not fit {model_cls.__name__}: {err}") from err
            raise
        problems = _loading_problems(info)
        if problems:
            message = (
                f"weights of {where!r} do not match {model_cls.__name__} "
                f"(config {type(config).__name__}): " + "; ".join(problems) + ". A partly random "
                "'pretrained' model would give silently wrong results."
            )
            if strict:
                raise WeightsMismatchError(message + " Pass strict=False to load anyway (e.g. a new head).")
            warnings.warn(message, stacklevel=2)
        return (model, info) if output_loading_info else model


def _deep_copy_json(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


def _config_field_names(config_class: type[CraneConfig]) -> set[str]:
    from dataclasses import fields

    return {f.name for f in fields(config_class)} | {"num_labels"}


def _load_config_dict(path: str | Path, hub: dict[str, Any]) -> dict[str, Any]:
    local = Path(path)
    text = str(path)
    looks_local = local.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
    if looks_local and not local.exists():
        raise ModelLoadError(f"no model folder at {text!r} (it looks like a path, not a Hub repo id 'org/name').")
    if local.is_dir() and not (local / hub.get("subfolder", "") / "config.json").is_file():
        raise ModelLoadError(
            f"{str(local)!r} has no config.json: it is not a saved model, or the save did not finish. "
            "Save again with model.save_pretrained(...)."
        )
    try:
        config_dict, _ = CraneConfig.get_config_dict(str(path), **hub)
    except OSError as err:
        raise ModelLoadError(
            f"cannot read the config of {str(path)!r}: {err} (with HF_HUB_OFFLINE=1 only models already "
            "in the local Hub cache can be loaded)."
        ) from err
    if not isinstance(config_dict, dict):
        raise PipelineFormatError(f"config.json of {str(path)!r} is not a JSON object.")
    return config_dict


def _resolve_class(cls: type[BaseModel], config_dict: dict[str, Any], where: str) -> type[BaseModel]:
    model_type = config_dict.get("model_type")
    model_cls = _MODEL_REGISTRY.get(model_type) if isinstance(model_type, str) else None
    if model_cls is None and cls is not BaseModel and model_type == cls.config_class.model_type:
        model_cls = cls
    if model_cls is None:
        package = config_dict.get("model_package")
        hint = (
            f" The config says the model comes from the package {package!r}: install and import it first."
            if isinstance(package, str) and package
            else " Import the module that defines the model class before loading."
        )
        raise UnknownModelTypeError(
            f"{where!r} has model_type {model_type!r}, which no imported neurocrane model registered.{hint} "
            f"Known model types: {', '.join(sorted(_MODEL_REGISTRY)) or '(none)'}."
        )
    if cls is not BaseModel and not issubclass(model_cls, cls):
        raise UnknownModelTypeError(
            f"{where!r} holds a {model_cls.__name__} (model_type {model_type!r}), not a {cls.__name__}; "
            f"load it with {model_cls.__name__}.from_pretrained or crane.BaseModel.from_pretrained."
        )
    return model_cls


def _compare_with_saved(
    model_cls: type[BaseModel], config: CraneConfig, saved: dict[str, tuple[int, ...]], where: str, strict: bool
) -> None:
    """Compare the weights a model built from ``config`` has with those saved, before reading any."""
    with torch.device("meta"):
        skeleton = model_cls(config)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    info = {
        "missing_keys": [k for k in expected if k not in saved],
        "unexpected_keys": [k for k in saved if k not in expected],
        "mismatched_keys": [(k, saved[k], expected[k]) for k in expected if k in saved and saved[k] != expected[k]],
    }
    problems = _loading_problems(info)
    if problems and (strict or info["mismatched_keys"]):
        raise WeightsMismatchError(
            f"weights of {where!r} do not match {model_cls.__name__} built from its config: "
            + "; ".join(problems)
            + ". Nothing was loaded. A partly random 'pretrained' model would give silently wrong results"
            + (" (pass strict=False to accept missing/unexpected keys, e.g. for a new head)." if strict else ".")
        )


def _check_weights_file(path: str | Path, hub: dict[str, Any], where: str) -> dict[str, tuple[int, ...]] | None:
    """Fail with a clear message when the safetensors weights are absent, pickled or unreadable;
    return the saved tensor shapes (``None`` for sharded checkpoints)."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    def find(name: str) -> str | None:
        try:
            return cached_file(
                str(path), name, _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False, **hub,
            )
        except OSError:
            return None

    weights = find("model.safetensors")
    if weights is None:
        if find("model.safetensors.index.json") is not None:
            return None  # sharded: transformers checks each shard
        if find("pytorch_model.bin") is not None:
            raise ModelLoadError(
                f"{where!r} only has pickled weights (pytorch_model.bin), which neurocrane never loads "
                "(unpickling can run arbitrary code). Convert them to model.safetensors in a trusted environment."
            )
        raise ModelLoadError(
            f"{where!r} has a config but no model.safetensors: the save is incomplete (or the upload "
            "did not finish). Save or push the model again."
        )
    try:
        with safe_open(weights, framework="pt") as fh:
            shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise ModelLoadError(
            f"the weights file of {where!r} ({weights}) is incomplete or corrupt ({err}); the save or "
            "download did not finish. Save or download the model again."
        ) from err
    return shapes


def _loading_problems(info: dict[str, Any]) -> list[str]:
    problems = []
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = info.get("mismatched_keys") or []
    errors = info.get("error_msgs") or []
    if missing:
        problems.append(f"missing {len(missing)} weight(s) {missing[:6]}{' ...' if len(missing) > 6 else ''}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weight(s) {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
    if mismatched:
        shown = [f"{m[0]}: saved {tuple(m[1])}, model {tuple(m[2])}" if isinstance(m, tuple | list) and len(m) == 3 else str(m) for m in list(mismatched)[:6]]
        problems.append(f"{len(mismatched)} weight(s) of the wrong shape: {shown}")
    problems += [str(e) for e in errors]
    return problems
