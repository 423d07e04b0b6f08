"""The :class:`Transform` base class and the registry of ops.

A Transform is a frozen, validated pydantic model: its fields are the op's parameters, its class
variable ``op`` is the name it is stored under in pipeline files. Defining a subclass with an
``op`` registers it; loading a pipeline can only build registered ops, so a pipeline file can
never name arbitrary code.

Example:
    >>> import torch
    >>> from neurocrane.pipeline import Transform
    >>> class Scale(Transform):
    ...     '''Multiply the signals by a constant.'''
    ...     op = "my_lab.scale"
    ...     factor: float = 1.0
    ...     def apply(self, batch):
    ...         return batch.replace(signals=batch.signals * self.factor)
    >>> Scale(factor=2.0)(torch.ones(2, 3)).max().item()
    2.0
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, ClassVar

import pydantic
import torch
from pydantic import ConfigDict

from neurocrane.batch import FLOAT_DTYPES, NeuralBatch, SignalSpec
from neurocrane.errors import (
    DuplicateTransformError,
    InputDTypeError,
    InputError,
    TransformValidationError,
    UnknownTransformError,
)

__all__ = [
    "Transform",
    "Identity",
    "RESERVED_OPS",
    "get_transform_class",
    "registered_ops",
    "unregister_transform",
    "as_batch",
    "restore_kind",
]

#: Op names used by the pipeline layout itself; no Transform may take them.
RESERVED_OPS = frozenset({"pipeline", "branch"})

_REGISTRY: dict[str, type[Transform]] = {}


def _same_definition(a: type, b: type) -> bool:
    """True when two classes are the same source definition (module reloaded, or a script that
    multiprocessing re-imports as ``__mp_main__``)."""
    main_names = {"__main__", "__mp_main__"}
    same_module = a.__module__ == b.__module__ or {a.__module__, b.__module__} <= main_names
    return same_module and a.__qualname__ == b.__qualname__


def _register(cls: type[Transform]) -> None:
    op = cls.__dict__["op"]
    if not isinstance(op, str) or not op or op != op.strip():
        raise DuplicateTransformError(
            f"{cls.__qualname__}.op must be a non-empty string without surrounding spaces; got {op!r}."
        )
    if op in RESERVED_OPS:
        raise DuplicateTransformError(
            f"op name '{op}' is reserved for the pipeline layout; choose another for {cls.__qualname__}."
        )
    existing = _REGISTRY.get(op)
    if existing is not None and existing is not cls and not _same_definition(existing, cls):
        raise DuplicateTransformError(
            f"op '{op}' is already registered by {existing.__module__}.{existing.__qualname__}; "
            f"{cls.__module__}.{cls.__qualname__} cannot take it. Give your transform a unique op, "
            "for example prefixed with your package name ('my_lab.scale')."
        )
    _REGISTRY[op] = cls


def registered_ops() -> dict[str, type[Transform]]:
    """All registered ops, name → Transform class, sorted by name."""
    return dict(sorted(_REGISTRY.items()))


def unregister_transform(op: str) -> None:
    """Remove an op from the registry (for notebooks and tests that redefine a transform)."""
    _REGISTRY.pop(op, None)


def get_transform_class(op: str, *, where: str = "", package_hint: Sequence[str] = ()) -> type[Transform]:
    """Look up a registered op by name.

    Args:
        op: The op name, e.g. ``"zscore"``.
        where: Context for the error message (e.g. ``"step 3 ('filter')"``).
        package_hint: Packages the pipeline's author said its ops come from.

    Raises:
        UnknownTransformError: naming close matches, the known ops and what to import.
    """
    cls = _REGISTRY.get(op)
    if cls is not None:
        return cls
    close = difflib.get_close_matches(str(op), list(_REGISTRY), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if package_hint:
        pkg = f" This pipeline says its ops come from {', '.join(package_hint)}: install and import it first."
    else:
        pkg = (
            " If the op comes from a plugin or your own code, import the module that defines it "
            "(e.g. `import my_lab.transforms`) before loading the pipeline."
        )
    raise UnknownTransformError(
        f"unknown op {op!r}{' in ' + where if where else ''}.{hint}{pkg} "
        f"Known ops: {', '.join(sorted(_REGISTRY))}."
    )


def _describe_validation_error(cls: type[pydantic.BaseModel], err: pydantic.ValidationError) -> list[str]:
    fields = list(cls.model_fields)
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        kind = e["type"]
        if kind == "extra_forbidden":
            close = difflib.get_close_matches(str(e["loc"][0]), fields, n=1)
            did_you = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(
                f"unknown field '{loc}'.{did_you} Fields of this op: {', '.join(fields) or '(none)'}."
            )
        elif kind == "missing":
            problems.append(f"field '{loc}' is required.")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            given = e.get("input")
            shown = repr(given) if not isinstance(given, dict) else "the parameters"
            if loc:
                problems.append(f"field '{loc}': {msg} (given: {shown}).")
            else:
                problems.append(f"{msg}")
    return problems


class Transform(pydantic.BaseModel):
    """Base class of every preprocessing step.

    Subclasses declare their parameters as pydantic fields, set ``op`` (the registry name) and
    implement :meth:`apply`. They may override :meth:`output_spec` (static shape/metadata
    propagation, and checks that the input fits) and :meth:`min_duration` (how much signal the
    step needs to settle, used to warn about filtering short windows).

    Class variables:
        op: Registry name, unique across all loaded packages.
        training_only: Step runs only when the pipeline is in training mode (augmentation,
            random electrode choice); skipped in eval mode.
        wants_continuous: Step should see whole recordings (long filters, resampling);
            :meth:`Pipeline.split` puts it in the recording part.
        recording_safe: Step may run on a whole continuous recording before windowing (false
            for per-window statistics such as per-window z-scoring).

    Instances are immutable and compare equal when their op and parameters are equal.
    Construction validates every parameter and raises :class:`TransformValidationError`.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        validate_default=True,
        ser_json_inf_nan="strings",
    )

    op: ClassVar[str]
    training_only: ClassVar[bool] = False
    wants_continuous: ClassVar[bool] = False
    recording_safe: ClassVar[bool] = True

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        reserved = {"name", "op"} & set(cls.model_fields)
        if reserved:
            raise DuplicateTransformError(
                f"{cls.__qualname__} declares field(s) {sorted(reserved)}; 'name' and 'op' are the "
                "step keys of pipeline files. Rename the field."
            )
        if "op" in cls.__dict__:
            _register(cls)

    def __init__(self, /, **params: Any) -> None:
        try:
            super().__init__(**params)
        except pydantic.ValidationError as err:
            raise TransformValidationError(
                getattr(type(self), "op", type(self).__name__),
                _describe_validation_error(type(self), err),
            ) from None

    # -- what subclasses implement ---------------------------------------------------------
    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        """Run the step on a batch and return the new batch (metadata updated)."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply(batch)")

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        """Describe the output for an input described by ``spec``.

        Raises :class:`~neurocrane.errors.SpecError` when the input cannot work (e.g. a cutoff
        above Nyquist). The default returns ``spec`` unchanged.
        """
        return spec

    def min_duration(self, spec: SignalSpec) -> float | None:
        """Seconds of signal the step needs before its output is trustworthy (e.g. a filter's
        impulse response length), or ``None`` when it has no such need."""
        return None

    # -- generic behaviour -----------------------------------------------------------------
    def __call__(self, data: torch.Tensor | NeuralBatch, **metadata: Any) -> torch.Tensor | NeuralBatch:
        """Apply the step. A tensor (with metadata keywords) in gives a tensor out; a
        :class:`NeuralBatch` in gives a ``NeuralBatch`` out."""
        batch, kind = as_batch(data, **metadata)
        return restore_kind(self.apply(batch), kind)

    def to_dict(self) -> dict[str, Any]:
        """The step as a plain dict: ``{"op": ..., **parameters}`` (JSON types only)."""
        return {"op": self.op, **self.model_dump(mode="json")}

    def non_default_params(self) -> dict[str, Any]:
        """Parameters whose value differs from the field default (for short descriptions)."""
        out = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if info.is_required():
                out[name] = value
                continue
            default = info.get_default(call_default_factory=True)
            if value != default:
                out[name] = value
        return out

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.non_default_params().items())
        return f"{type(self).__name__}({params})"

    def __str__(self) -> str:
        return repr(self)

    def __hash__(self) -> int:
        return hash((self.op, repr(sorted(self.model_dump(mode="json").items()))))


def as_batch(data: Any, **metadata: Any) -> tuple[NeuralBatch, str]:
    """Wrap pipeline input in a :class:`NeuralBatch`.

    Args:
        data: A ``NeuralBatch``, or a float tensor of shape ``(batch, channels, time)`` or
            ``(channels, time)``.
        **metadata: ``NeuralBatch`` fields for a tensor input (``sampling_rate``,
            ``channel_names``, ``channel_positions``, ``channel_mask``, ...).

    Returns:
        The batch and a tag (``"batch"``, ``"tensor"`` or ``"tensor_unbatched"``) for
        :func:`restore_kind`.
    """
    if isinstance(data, NeuralBatch):
        if metadata:
            raise InputError(
                f"metadata keywords {sorted(metadata)} were given with a NeuralBatch, which "
                "already carries its metadata; use batch.replace(...) to change it."
            )
        _check_float(data.signals)
        return data, "batch"
    if not isinstance(data, torch.Tensor):
        raise InputError(
            f"expected a torch.Tensor or NeuralBatch; got {type(data).__name__}. "
            "Convert arrays with torch.as_tensor(array)."
        )
    _check_float(data)
    axes = metadata.pop("axes", None)
    if axes is None:
        if data.ndim == 2:
            batch = NeuralBatch(data.unsqueeze(0), **_unbatched_meta(metadata))
            return batch, "tensor_unbatched"
        if data.ndim != 3:
            raise InputError(
                f"expected a tensor of shape (batch, channels, time) or (channels, time); got "
                f"shape {tuple(data.shape)} (rank {data.ndim}). For other layouts wrap the data "
                "in a NeuralBatch with explicit axes."
            )
    return NeuralBatch(data, axes=axes or ("batch", "channel", "time"), **metadata), "tensor"


def _unbatched_meta(metadata: dict[str, Any]) -> dict[str, Any]:
    mask = metadata.get("channel_mask")
    if mask is not None:
        metadata = {**metadata, "channel_mask": torch.as_tensor(mask).reshape(1, -1)}
    return metadata


def restore_kind(batch: NeuralBatch, kind: str) -> torch.Tensor | NeuralBatch:
    """Return the batch in the form the caller gave (see :func:`as_batch`)."""
    if kind == "batch":
        return batch
    if kind == "tensor_unbatched":
        return batch.signals.squeeze(0)
    return batch.signals


def _check_float(x: torch.Tensor) -> None:
    if x.dtype not in FLOAT_DTYPES:
        raise InputDTypeError(
            f"expected floating-point signals (float32 or float64); got dtype {x.dtype}. "
            "Convert with x.float() (integer recordings should be scaled to physical units first)."
        )


class Identity(Transform):
    """A step that returns its input unchanged (the pipeline of a model without preprocessing).

    Example:
        >>> Pipeline([Identity()])
    """

    op: ClassVar[str] = "identity"

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        return batch
