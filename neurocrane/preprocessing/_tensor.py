"""Small helpers shared by the preprocessing functions: rank handling, input checks, unit
conversion. Private to :mod:`neurocrane.preprocessing`."""

from __future__ import annotations

import math

import torch

from neurocrane.batch import FLOAT_DTYPES, SignalSpec
from neurocrane.errors import InputDTypeError, InputError, SpecError


def check_signals(x: torch.Tensor, op: str, ranks: tuple[int, ...] = (2, 3)) -> None:
    """Raise a clear error unless ``x`` is a floating-point tensor of an accepted rank."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{op}: expected a torch.Tensor; got {type(x).__name__}. Use torch.as_tensor(array).")
    if x.dtype not in FLOAT_DTYPES:
        raise InputDTypeError(f"{op}: expected floating-point data (float32/float64); got {x.dtype}. Use x.float().")
    if x.ndim not in ranks:
        shapes = {2: "(channels, time)", 3: "(batch, channels, time)", 4: "(batch, channels, freqs, time)"}
        accepted = " or ".join(shapes.get(r, f"rank {r}") for r in ranks)
        raise InputError(f"{op}: expected a tensor of shape {accepted}; got shape {tuple(x.shape)}.")


def batched(x: torch.Tensor, op: str) -> tuple[torch.Tensor, bool]:
    """Return ``(x3, was_unbatched)`` with ``x3`` of shape (batch, channels, time)."""
    check_signals(x, op)
    return (x.unsqueeze(0), True) if x.ndim == 2 else (x, False)


def unbatched(x: torch.Tensor, was_unbatched: bool) -> torch.Tensor:
    """Undo :func:`batched`."""
    return x.squeeze(0) if was_unbatched else x


def seconds_to_samples(seconds: float, rate: float, what: str, op: str, minimum: int = 1) -> int:
    """Convert a duration to a whole number of samples (rounded), with a clear error when the
    result is below ``minimum``."""
    n = int(round(seconds * rate))
    if n < minimum:
        raise SpecError(
            f"{op}: {what} of {seconds:g} s is {seconds * rate:.3g} samples at {rate:g} Hz; it must be "
            f"at least {minimum} sample(s). Use a longer {what} or a higher sampling rate."
        )
    return n


def require_rate(spec: SignalSpec, op: str) -> float | None:
    """Return the spec's sampling rate; raise at run time (shape known) when it is missing."""
    if spec.sampling_rate is None and spec.n_times is not None:
        raise SpecError(
            f"{op} needs the sampling rate; pass sampling_rate=... with the data (or set it on "
            "the NeuralBatch)."
        )
    return spec.sampling_rate


def require_axes(spec: SignalSpec, op: str, axes: tuple[str, ...]) -> None:
    if spec.axes != axes:
        raise SpecError(f"{op} works on data with axes {axes}; got {spec.axes}. Place it before spectral steps.")


def check_finite_positive(value: float, name: str, op: str) -> None:
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{op}: {name} must be a positive finite number; got {value}.")
