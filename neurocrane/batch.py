"""The data that flows through pipelines: :class:`NeuralBatch`, and its description :class:`SignalSpec`.

A ``NeuralBatch`` is a batched tensor plus the metadata preprocessing ops need (sampling rate,
channel names and positions, channel mask, axis names, frequency values after a spectral step)
and the record of which pipelines already ran on it. A ``SignalSpec`` is the same description
without the data, so a pipeline can be checked and described before any data arrives.

Conventions:
    * ``signals`` always has a leading batch axis; axis names are listed in ``axes`` and
      always start with ``("batch", "channel", ...)``. Time-domain data is
      ``("batch", "channel", "time")``; a spectrogram is ``("batch", "channel", "freq", "time")``.
    * ``sampling_rate`` is the rate of the ``time`` axis in Hz (after a spectral step: frames
      per second).
    * Channel metadata is shared by every sample of the batch (that is what session batching
      is for); ``channel_mask`` marks, per sample, which channels hold real data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from neurocrane.errors import InputError

__all__ = ["NeuralBatch", "SignalSpec", "TIME_AXES", "SPECTRAL_AXES", "KNOWN_AXES", "FLOAT_DTYPES"]

TIME_AXES: tuple[str, ...] = ("batch", "channel", "time")
SPECTRAL_AXES: tuple[str, ...] = ("batch", "channel", "freq", "time")
KNOWN_AXES = frozenset({"batch", "channel", "time", "freq", "feature"})
#: Signal dtypes pipelines and ops accept (half precision is computed in float32 where needed).
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_axes(axes: tuple[str, ...], where: str) -> None:
    if len(axes) < 3 or axes[0] != "batch" or axes[1] != "channel":
        raise InputError(
            f"{where}: axes must start with ('batch', 'channel') and have at least 3 entries; "
            f"got {axes}. Example: ('batch', 'channel', 'time')."
        )
    unknown = [a for a in axes if a not in KNOWN_AXES]
    if unknown or len(set(axes)) != len(axes):
        raise InputError(
            f"{where}: axes must be distinct names from {sorted(KNOWN_AXES)}; got {axes}."
        )


def _check_rate(rate: float | None, where: str) -> float | None:
    if rate is None:
        return None
    rate = float(rate)
    if not math.isfinite(rate) or rate <= 0:
        raise InputError(f"{where}: sampling_rate must be a positive finite number of Hz; got {rate}.")
    return rate


@dataclass(frozen=True)
class SignalSpec:
    """What a pipeline step knows about its input or output, without the data.

    Args:
        shape: Size of each axis; ``None`` where unknown (the batch size usually is).
        axes: Name of each axis, starting with ``("batch", "channel")``.
        sampling_rate: Rate of the ``time`` axis in Hz, or ``None`` if unknown.
        channel_names: Channel labels, or ``None`` if unknown.
        frequencies: Values of the ``freq`` axis in Hz, when there is one and they are known.
        has_positions: Whether channel positions (mm) travel with the data.

    Example:
        >>> spec = SignalSpec(shape=(None, 64, 2048), sampling_rate=2048.0)
        >>> spec.duration
        1.0
    """

    shape: tuple[int | None, ...] = (None, None, None)
    axes: tuple[str, ...] = TIME_AXES
    sampling_rate: float | None = None
    channel_names: tuple[str, ...] | None = None
    frequencies: tuple[float, ...] | None = None
    has_positions: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "axes", tuple(self.axes))
        _check_axes(self.axes, "SignalSpec")
        if len(self.shape) != len(self.axes):
            raise InputError(
                f"SignalSpec: shape {self.shape} has {len(self.shape)} axes but axes {self.axes} "
                f"names {len(self.axes)}; give one size (or None) per axis."
            )
        object.__setattr__(self, "sampling_rate", _check_rate(self.sampling_rate, "SignalSpec"))
        if self.channel_names is not None:
            names = tuple(str(n) for n in self.channel_names)
            object.__setattr__(self, "channel_names", names)
            if self.shape[1] is None:
                object.__setattr__(self, "shape", (self.shape[0], len(names), *self.shape[2:]))
            elif self.shape[1] != len(names):
                raise InputError(
                    f"SignalSpec: {len(names)} channel names for {self.shape[1]} channels."
                )
        if self.frequencies is not None:
            object.__setattr__(self, "frequencies", tuple(float(f) for f in self.frequencies))

    # -- convenient views ---------------------------------------------------------------
    def size(self, axis: str) -> int | None:
        """Size of a named axis (``None`` if unknown). Raises if the axis does not exist."""
        return self.shape[self.axis(axis)]

    def axis(self, name: str) -> int:
        """Position of a named axis. Raises :class:`InputError` if it does not exist."""
        try:
            return self.axes.index(name)
        except ValueError:
            raise InputError(f"no '{name}' axis in data with axes {self.axes}.") from None

    @property
    def n_channels(self) -> int | None:
        return self.shape[1]

    @property
    def n_times(self) -> int | None:
        return self.shape[self.axes.index("time")] if "time" in self.axes else None

    @property
    def duration(self) -> float | None:
        """Length of the time axis in seconds, when both its size and the rate are known."""
        if self.n_times is None or self.sampling_rate is None:
            return None
        return self.n_times / self.sampling_rate

    def replace(self, **changes: Any) -> SignalSpec:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        sizes = []
        for ax, n in zip(self.axes, self.shape, strict=True):
            if n is None:
                n = {"batch": "B", "channel": "C", "time": "T", "freq": "F"}.get(ax, "?")
            sizes.append(str(n))
        rate = "? Hz" if self.sampling_rate is None else f"{self.sampling_rate:g} Hz"
        return f"({', '.join(sizes)}) {rate} [{' x '.join(self.axes)}]"


@dataclass(frozen=True, eq=False)
class NeuralBatch:
    """A batch of neural signals with the metadata preprocessing needs.

    Args:
        signals: Float tensor whose axes are named by ``axes`` (batch first).
        sampling_rate: Rate of the ``time`` axis in Hz (``None`` if unknown).
        channel_names: One unique label per channel; defaults to ``"0", "1", ...``.
        channel_positions: Optional ``(channels, 3)`` tensor of positions in mm.
        channel_mask: Optional ``(batch, channels)`` bool tensor, ``True`` where a channel
            holds real data for that sample.
        axes: Axis names, default ``("batch", "channel", "time")``.
        frequencies: Values of the ``freq`` axis in Hz, after a spectral step.
        applied: Fingerprints of the pipelines (or pipeline parts) already applied.

    Example:
        >>> x = torch.randn(8, 4, 1000)
        >>> batch = NeuralBatch(x, sampling_rate=1000.0, channel_names=["LA1", "LA2", "LA3", "LA4"])
        >>> batch.spec.duration
        1.0
    """

    signals: torch.Tensor
    sampling_rate: float | None = None
    channel_names: tuple[str, ...] | None = None
    channel_positions: torch.Tensor | None = None
    channel_mask: torch.Tensor | None = None
    axes: tuple[str, ...] = TIME_AXES
    frequencies: tuple[float, ...] | None = None
    applied: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        x = self.signals
        if not isinstance(x, torch.Tensor):
            raise InputError(
                f"NeuralBatch.signals must be a torch.Tensor; got {type(x).__name__}. "
                "Convert with torch.as_tensor(array)."
            )
        axes = tuple(self.axes)
        object.__setattr__(self, "axes", axes)
        _check_axes(axes, "NeuralBatch")
        if x.ndim != len(axes):
            raise InputError(
                f"NeuralBatch: signals of shape {tuple(x.shape)} (rank {x.ndim}) do not match "
                f"axes {axes} (rank {len(axes)}). Time-domain data must be (batch, channels, time); "
                "add a batch axis with x.unsqueeze(0)."
            )
        object.__setattr__(self, "sampling_rate", _check_rate(self.sampling_rate, "NeuralBatch"))
        n_channels = x.shape[1]
        names = self.channel_names
        names = tuple(str(i) for i in range(n_channels)) if names is None else tuple(str(n) for n in names)
        if len(names) != n_channels:
            raise InputError(
                f"NeuralBatch: {len(names)} channel names given for {n_channels} channels "
                f"(signals shape {tuple(x.shape)}); give exactly one name per channel."
            )
        if len(set(names)) != len(names):
            seen: set[str] = set()
            dupes = sorted({n for n in names if n in seen or seen.add(n)})
            raise InputError(f"NeuralBatch: channel names must be unique; repeated: {dupes}.")
        object.__setattr__(self, "channel_names", names)
        pos = self.channel_positions
        if pos is not None:
            pos = torch.as_tensor(pos)
            if pos.shape != (n_channels, 3):
                raise InputError(
                    f"NeuralBatch: channel_positions must have shape ({n_channels}, 3) (one xyz "
                    f"position in mm per channel); got {tuple(pos.shape)}."
                )
            object.__setattr__(self, "channel_positions", pos)
        mask = self.channel_mask
        if mask is not None:
            mask = torch.as_tensor(mask)
            if mask.shape != (x.shape[0], n_channels):
                raise InputError(
                    f"NeuralBatch: channel_mask must have shape (batch, channels) = "
                    f"({x.shape[0]}, {n_channels}); got {tuple(mask.shape)}."
                )
            object.__setattr__(self, "channel_mask", mask.to(torch.bool))
        if self.frequencies is not None:
            freqs = tuple(float(f) for f in self.frequencies)
            if "freq" in axes and len(freqs) != x.shape[axes.index("freq")]:
                raise InputError(
                    f"NeuralBatch: {len(freqs)} frequency values for a freq axis of size "
                    f"{x.shape[axes.index('freq')]}."
                )
            object.__setattr__(self, "frequencies", freqs)
        object.__setattr__(self, "applied", tuple(self.applied))

    # -- views ----------------------------------------------------------------------------
    @property
    def spec(self) -> SignalSpec:
        """The :class:`SignalSpec` describing this batch."""
        return SignalSpec(
            shape=tuple(self.signals.shape),
            axes=self.axes,
            sampling_rate=self.sampling_rate,
            channel_names=self.channel_names,
            frequencies=self.frequencies,
            has_positions=self.channel_positions is not None,
        )

    @property
    def batch_size(self) -> int:
        return self.signals.shape[0]

    @property
    def n_channels(self) -> int:
        return self.signals.shape[1]

    @property
    def device(self) -> torch.device:
        return self.signals.device

    @property
    def dtype(self) -> torch.dtype:
        return self.signals.dtype

    def axis(self, name: str) -> int:
        """Position of a named axis (e.g. ``batch.axis("time")``)."""
        try:
            return self.axes.index(name)
        except ValueError:
            raise InputError(f"no '{name}' axis in data with axes {self.axes}.") from None

    def channel_index(self, names: Sequence[str]) -> list[int]:
        """Positions of the named channels, resolved by name.

        Raises:
            InputError: if a name is not one of this batch's channels.
        """
        lookup = {n: i for i, n in enumerate(self.channel_names)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise InputError(
                f"channels {missing} are not in this batch; it has {len(lookup)} channels "
                f"({', '.join(list(lookup)[:8])}{', ...' if len(lookup) > 8 else ''})."
            )
        return [lookup[n] for n in names]

    # -- copies ---------------------------------------------------------------------------
    def replace(self, **changes: Any) -> NeuralBatch:
        """Return a copy with some fields changed; the result is validated again.

        Example:
            >>> batch.replace(signals=batch.signals * 2)
        """
        return dataclasses.replace(self, **changes)

    def with_applied(self, fingerprint: str) -> NeuralBatch:
        """Return a copy that records ``fingerprint`` as applied."""
        if fingerprint in self.applied:
            return self
        return dataclasses.replace(self, applied=(*self.applied, fingerprint))

    def to(self, *args: Any, **kwargs: Any) -> NeuralBatch:
        """Move to a device and/or dtype like ``Tensor.to``; metadata travels along.

        The channel mask keeps its bool dtype; positions follow the device (and a float dtype).
        """
        signals = self.signals.to(*args, **kwargs)
        pos = self.channel_positions
        if pos is not None:
            pos = pos.to(device=signals.device, dtype=signals.dtype if signals.is_floating_point() else None)
        mask = self.channel_mask
        if mask is not None:
            mask = mask.to(device=signals.device)
        return dataclasses.replace(self, signals=signals, channel_positions=pos, channel_mask=mask)

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, index: int | slice | torch.Tensor | Sequence[int]) -> NeuralBatch:
        """Select samples along the batch axis; an int keeps the batch axis (size 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        mask = None if self.channel_mask is None else self.channel_mask[index]
        return dataclasses.replace(self, signals=self.signals[index], channel_mask=mask)

    @classmethod
    def cat(cls, batches: Sequence[NeuralBatch]) -> NeuralBatch:
        """Concatenate batches that share their metadata along the batch axis.

        Raises:
            InputError: if the batches differ in channels, rate, axes or applied pipelines.
        """
        if not batches:
            raise InputError("NeuralBatch.cat needs at least one batch; got an empty list.")
        first = batches[0]
        for i, b in enumerate(batches[1:], start=1):
            for name in ("sampling_rate", "channel_names", "axes", "frequencies", "applied"):
                if getattr(b, name) != getattr(first, name):
                    raise InputError(
                        f"NeuralBatch.cat: batch {i} has a different {name} than batch 0 "
                        f"({getattr(b, name)!r} vs {getattr(first, name)!r}); only batches "
                        "from the same session/pipeline can be concatenated."
                    )
        masks = [b.channel_mask for b in batches]
        if any(m is not None for m in masks):
            masks = [
                torch.ones(b.batch_size, b.n_channels, dtype=torch.bool, device=b.device)
                if m is None else m
                for b, m in zip(batches, masks, strict=True)
            ]
            mask = torch.cat(masks)
        else:
            mask = None
        return dataclasses.replace(
            first, signals=torch.cat([b.signals for b in batches]), channel_mask=mask
        )

    def __repr__(self) -> str:
        extra = f", applied={len(self.applied)}" if self.applied else ""
        return (
            f"NeuralBatch({self.spec}, dtype={str(self.dtype).removeprefix('torch.')}, "
            f"device={self.device}{extra})"
        )
