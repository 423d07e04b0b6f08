"""Layout operations: trim the ends of the time axis, replace NaN/inf, reorder axes by name.

These are the finishing steps of published spectral pipelines (BrainBERT: "drop 10 frames at
each end; NaN → 0; output laid out (time, frequency) per electrode"). The nodes find the time
axis by name, and steps that come after :class:`PermuteAxes` (z-scoring over ``"time"``, ...)
keep working because they, too, address axes by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import pydantic
import torch

from neurocrane.batch import KNOWN_AXES, NeuralBatch, SignalSpec
from neurocrane.errors import InputError, SpecError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing._tensor import check_signals

__all__ = ["trim_edges", "nan_to_num", "permute_axes", "Trim", "NanToNum", "PermuteAxes"]

AnyAxis = Literal["batch", "channel", "time", "freq", "feature"]


def trim_edges(x: torch.Tensor, start: int, end: int | None = None, dim: int = -1) -> torch.Tensor:
    """Drop ``start`` entries at the beginning and ``end`` at the end of one axis.

    Args:
        x: Any tensor, e.g. (batch, channels, time) or (channels, time).
        start: Entries to drop at the beginning (>= 0).
        end: Entries to drop at the end (default: ``start``).
        dim: The axis to trim (default: the last, time).

    Returns:
        A view of ``x`` with ``size - start - end`` entries along ``dim``.

    Raises:
        InputError: negative counts, or trimming the whole axis away.

    Example:
        >>> trim_edges(torch.randn(2, 4, 100), 10).shape
        torch.Size([2, 4, 80])
    """
    end = start if end is None else end
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"trim_edges: {name} must be an integer >= 0; got {value!r}.")
    if not -x.ndim <= dim < x.ndim:
        raise InputError(f"trim_edges: dim {dim} is out of range for a rank-{x.ndim} tensor.")
    size = x.shape[dim]
    if start + end >= size:
        raise InputError(
            f"trim_edges: dropping {start} + {end} entries leaves nothing of an axis of size {size}; "
            "trim less or use longer input."
        )
    return x.narrow(dim, start, size - start - end)


def nan_to_num(
    x: torch.Tensor, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None
) -> torch.Tensor:
    """Replace NaN (and ±inf) with finite numbers.

    Args:
        x: Float tensor of any shape.
        nan: Value for NaN.
        posinf: Value for +inf (default: the dtype's largest finite value).
        neginf: Value for -inf (default: the dtype's most negative finite value).

    Returns:
        A tensor of the input's shape, dtype and device without NaN or inf.

    Example:
        >>> nan_to_num(torch.tensor([1.0, float("nan")])).tolist()
        [1.0, 0.0]
    """
    check_signals(x, "nan_to_num", ranks=tuple(range(0, 9)))
    return torch.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)


def permute_axes(x: torch.Tensor, source: Sequence[str], target: Sequence[str]) -> torch.Tensor:
    """Reorder the axes of ``x`` from the named layout ``source`` to ``target``.

    Args:
        x: Tensor whose axes are named by ``source``.
        source: Current axis names, e.g. ``("batch", "channel", "freq", "time")``.
        target: The same names in the wanted order, e.g. ``("batch", "channel", "time", "freq")``.

    Returns:
        A permuted view of ``x``.

    Raises:
        InputError: the names do not match the tensor's rank or each other.

    Example:
        >>> x = torch.randn(2, 3, 40, 100)
        >>> permute_axes(x, ("batch", "channel", "freq", "time"), ("batch", "channel", "time", "freq")).shape
        torch.Size([2, 3, 100, 40])
    """
    source, target = tuple(source), tuple(target)
    if len(source) != x.ndim or len(set(source)) != len(source):
        raise InputError(
            f"permute_axes: source names {source} must name each of the {x.ndim} axes of a tensor of shape "
            f"{tuple(x.shape)} once."
        )
    if sorted(source) != sorted(target):
        raise InputError(
            f"permute_axes: target {target} must contain exactly the axes {source}, in any order."
        )
    return x.permute(*(source.index(a) for a in target))


class Trim(Transform):
    """Drop the same amount at both ends of the time axis (e.g. a spectrogram's edge frames).

    Give either ``frames`` (entries of the time axis: samples for time-domain data, frames
    after a spectral step; BrainBERT uses ``frames=10``) or ``seconds`` (converted with the
    data's ``sampling_rate``, which after a spectral step is the frame rate, and rounded).
    Everything else (rate, channels, frequencies) is unchanged. It works on windows, so it is
    not applied to whole recordings.

    Args:
        frames: Entries to drop at each end (>= 0).
        seconds: Duration to drop at each end (> 0).

    Example:
        >>> Trim(frames=10)
    """

    op: ClassVar[str] = "trim"
    recording_safe: ClassVar[bool] = False
    frames: int | None = pydantic.Field(default=None, ge=0)
    seconds: float | None = pydantic.Field(default=None, gt=0)

    @pydantic.model_validator(mode="after")
    def _one_unit(self) -> Trim:
        if (self.frames is None) == (self.seconds is None):
            raise ValueError("give exactly one of frames (entries of the time axis) or seconds, e.g. Trim(frames=10)")
        return self

    def _count(self, spec: SignalSpec) -> int | None:
        if self.frames is not None:
            return self.frames
        if spec.sampling_rate is None:
            if spec.n_times is None:
                return None
            raise SpecError(f"{self.op}: seconds={self.seconds:g} needs the sampling rate; pass sampling_rate=....")
        return int(round(self.seconds * spec.sampling_rate))

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        if "time" not in spec.axes:
            raise SpecError(f"{self.op} needs a 'time' axis; the data has axes {spec.axes}.")
        k = self._count(spec)
        n = spec.n_times
        if n is None or k is None:
            return spec
        if 2 * k >= n:
            raise SpecError(
                f"{self.op}: dropping {k} entries at each end leaves nothing of a time axis of {n}; "
                "trim less or use longer windows."
            )
        shape = list(spec.shape)
        shape[spec.axis("time")] = n - 2 * k
        return spec.replace(shape=tuple(shape))

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        self.output_spec(batch.spec)
        k = self._count(batch.spec)
        return batch.replace(signals=trim_edges(batch.signals, k, k, dim=batch.axis("time")))


class NanToNum(Transform):
    """Replace NaN with ``nan`` (and ±inf with ``posinf`` / ``neginf``); layout unchanged.

    Args:
        nan: Value for NaN (default 0).
        posinf: Value for +inf (default: the dtype's largest finite value).
        neginf: Value for -inf (default: the dtype's most negative finite value).

    Example:
        >>> NanToNum(nan=0.0)
    """

    op: ClassVar[str] = "nan_to_num"
    nan: float = 0.0
    posinf: float | None = None
    neginf: float | None = None

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        return batch.replace(signals=nan_to_num(batch.signals, self.nan, self.posinf, self.neginf))


class PermuteAxes(Transform):
    """Reorder the axes after ``channel`` by name, e.g. a spectrogram to (time, freq) per channel.

    ``batch`` and ``channel`` always stay first (every ``NeuralBatch`` starts with them), so
    ``axes`` may be given with or without the leading ``"batch"``; it is stored with it.

    Args:
        axes: The wanted order, e.g. ``("batch", "channel", "time", "freq")``.

    Example:
        >>> PermuteAxes(axes=("batch", "channel", "time", "freq"))
    """

    op: ClassVar[str] = "permute_axes"
    axes: tuple[AnyAxis, ...]

    @pydantic.field_validator("axes", mode="after")
    @classmethod
    def _layout(cls, axes: tuple[str, ...]) -> tuple[str, ...]:
        if axes[:1] == ("channel",):
            axes = ("batch", *axes)
        if len(axes) < 3 or axes[:2] != ("batch", "channel"):
            raise ValueError(
                f"axes must start with ('batch', 'channel') (or 'channel') and name at least one more axis; got {axes}"
            )
        if len(set(axes)) != len(axes):
            raise ValueError(f"axes must be distinct; got {axes}")
        unknown = set(axes) - KNOWN_AXES
        if unknown:
            raise ValueError(f"unknown axis names {sorted(unknown)}")
        return axes

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        if sorted(spec.axes) != sorted(self.axes):
            raise SpecError(
                f"{self.op}: axes {self.axes} must be a reordering of the data's axes {spec.axes}."
            )
        shape = tuple(spec.shape[spec.axis(a)] for a in self.axes)
        return spec.replace(shape=shape, axes=self.axes)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        self.output_spec(batch.spec)
        return batch.replace(signals=permute_axes(batch.signals, batch.axes, self.axes), axes=self.axes)
