"""Normalization: z-score, min-max and robust (median / interquartile range) scaling.

Statistics are computed per sample (never across the batch) unless the caller explicitly
names the batch axis in the functional form, and channels marked False in a channel mask
neither enter the statistics nor become NaN: they come out as 0, even if they held NaN.
Near-constant data (spread at or below ``eps``) is scaled by 1 instead of being divided by ~0.
The nodes name their axes (``"time"``, ``"freq"``, ...), so they work on any layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import ClassVar, Literal

import pydantic
import torch

from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import InputError, SpecError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing._tensor import check_signals

__all__ = ["zscore_normalize", "minmax_normalize", "robust_normalize", "ZScore", "MinMax", "RobustScale"]

AxisName = Literal["channel", "time", "freq", "feature"]


def _dims(dim: int | Sequence[int], ndim: int, op: str) -> tuple[int, ...]:
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims:
        raise InputError(f"{op}: dim must name at least one axis; got {dim!r}.")
    out = []
    for d in dims:
        if not -ndim <= d < ndim:
            raise InputError(f"{op}: dim {d} is out of range for a rank-{ndim} tensor.")
        out.append(d % ndim)
    if len(set(out)) != len(out):
        raise InputError(f"{op}: dim {dim!r} names an axis twice.")
    return tuple(sorted(out))


def _mask_keep(channel_mask: torch.Tensor | None, x: torch.Tensor, op: str) -> torch.Tensor | None:
    """Bool mask from a (batch, channels) or (channels,) channel mask, broadcast to ``x``'s
    shape; None when every channel is kept."""
    if channel_mask is None:
        return None
    mask = torch.as_tensor(channel_mask, device=x.device).to(torch.bool)
    expected = x.shape[:2] if x.ndim >= 3 else x.shape[:1]
    if mask.ndim == 1 and x.ndim >= 3:
        mask = mask.expand(x.shape[0], -1)
    if tuple(mask.shape) != tuple(expected):
        raise InputError(f"{op}: channel_mask must have shape {tuple(expected)}; got {tuple(mask.shape)}.")
    if bool(mask.all()):
        return None
    return mask.reshape(*mask.shape, *([1] * (x.ndim - mask.ndim))).expand_as(x)


def _check_eps(eps: float, op: str) -> None:
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps >= 0):
        raise InputError(f"{op}: eps must be a finite number >= 0; got {eps!r}.")


def _safe_scale(spread: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.where(spread > eps, spread, torch.ones_like(spread))


def zscore_normalize(
    neural_data: torch.Tensor,
    dim: int | Sequence[int] = -1,
    *,
    eps: float = 1e-8,
    clip: float | None = None,
    ddof: int = 0,
    channel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Subtract the mean and divide by the standard deviation over ``dim``.

    Args:
        neural_data: Any float tensor; (batch, channels, time) is the usual layout.
        dim: Axis or axes the statistics run over (default: the last axis, time). For
            (batch, channels, time) data, ``dim=(1, 2)`` normalizes each sample as a whole.
        eps: A standard deviation at or below ``eps`` is replaced by 1, so constant signals
            map to 0 instead of NaN/inf.
        clip: If given, clamp the result to ``[-clip, clip]``.
        ddof: 0 for the population std (default, as scipy.stats.zscore), 1 for the sample std.
        channel_mask: Optional bool mask, (batch, channels) or (channels,), True = real data.
            Masked channels do not enter the statistics and come out as 0.

    Returns:
        Normalized tensor of the input's shape and dtype.

    Example:
        >>> x = torch.randn(4, 16, 1000) * 5 + 3
        >>> z = zscore_normalize(x, dim=-1)
        >>> round(float(z.std(dim=-1, unbiased=False).mean()), 3)
        1.0
    """
    check_signals(neural_data, "zscore_normalize", ranks=(1, 2, 3, 4, 5))
    if ddof not in (0, 1):
        raise InputError(f"zscore_normalize: ddof must be 0 or 1; got {ddof}.")
    _check_eps(eps, "zscore_normalize")
    x = neural_data
    dims = _dims(dim, x.ndim, "zscore_normalize")
    keep = _mask_keep(channel_mask, x, "zscore_normalize")
    if keep is None:
        var, mean = torch.var_mean(x, dim=dims, correction=ddof, keepdim=True)
    else:
        # torch.where, not multiplication by 0, so NaN in masked channels cannot leak in
        count = keep.to(x.dtype).sum(dim=dims, keepdim=True)
        mean = torch.where(keep, x, 0).sum(dim=dims, keepdim=True) / count.clamp_min(1)
        sq = torch.where(keep, x - mean, 0).square()
        var = sq.sum(dim=dims, keepdim=True) / (count - ddof).clamp_min(1)
    out = (x - mean) / _safe_scale(var.sqrt(), eps)
    if keep is not None:
        out = torch.where(keep, out, 0)
    if clip is not None:
        out = out.clamp(-clip, clip)
    return out


def _flatten_dims(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Move ``dims`` to the end and flatten them into one axis."""
    moved = x.movedim(dims, tuple(range(x.ndim - len(dims), x.ndim)))
    return moved.reshape(*moved.shape[: x.ndim - len(dims)], -1)


def _restore_dims(stat: torch.Tensor, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Give a statistic reduced over ``dims`` (by :func:`_flatten_dims`) keepdim shape."""
    shape = [1 if d in dims else n for d, n in enumerate(x.shape)]
    return stat.reshape(shape)


def _quantiles(
    x: torch.Tensor, keep: torch.Tensor | None, dims: tuple[int, ...], qs: Sequence[float]
) -> list[torch.Tensor]:
    """Quantiles over ``dims`` with linear interpolation (numpy's default method), ignoring
    entries where ``keep`` is False; keepdim shape. Sort-based, so any size and autograd work
    (torch.quantile refuses large inputs)."""
    flat = _flatten_dims(x, dims)
    if keep is None:
        ordered = flat.sort(dim=-1).values
        count = torch.full(flat.shape[:-1], flat.shape[-1], device=x.device, dtype=x.dtype)
    else:
        k = _flatten_dims(keep, dims)
        ordered = torch.where(k, flat, torch.full_like(flat, float("inf"))).sort(dim=-1).values
        count = k.to(x.dtype).sum(dim=-1)
        # the +inf placeholders sit after the kept values; zero them so no inf - inf appears
        positions = torch.arange(flat.shape[-1], device=x.device)
        ordered = torch.where(positions < count.unsqueeze(-1), ordered, 0)
    last = (count - 1).clamp_min(0).unsqueeze(-1)
    out = []
    for q in qs:
        pos = last * q
        lo = pos.floor()
        frac = pos - lo
        lo_v = ordered.gather(-1, lo.long())
        hi_v = ordered.gather(-1, pos.ceil().long())
        out.append(_restore_dims((lo_v + frac * (hi_v - lo_v)).squeeze(-1), x, dims))
    return out


def minmax_normalize(
    neural_data: torch.Tensor,
    dim: int | Sequence[int] = -1,
    *,
    feature_range: tuple[float, float] = (0.0, 1.0),
    eps: float = 1e-8,
    clip: bool = False,
    channel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rescale linearly so that the minimum over ``dim`` maps to ``feature_range[0]`` and the
    maximum to ``feature_range[1]`` (as scikit-learn's ``MinMaxScaler``, per sample).

    Args:
        neural_data: Any float tensor; (batch, channels, time) is the usual layout.
        dim: Axis or axes the minimum and maximum run over (default: time).
        feature_range: Target ``(low, high)`` with ``low < high``.
        eps: A range (max - min) at or below ``eps`` is replaced by 1, so constant signals
            map to ``low`` instead of NaN/inf.
        clip: Clamp the result to ``feature_range`` (guards the bounds against rounding).
        channel_mask: Optional bool mask, (batch, channels) or (channels,), True = real data.
            Masked channels do not enter the statistics and come out as 0.

    Returns:
        Rescaled tensor of the input's shape, dtype and device.

    Example:
        >>> x = torch.randn(4, 16, 1000)
        >>> y = minmax_normalize(x, feature_range=(-1.0, 1.0))
        >>> float(y.amin()), float(y.amax())
        (-1.0, 1.0)
    """
    op = "minmax_normalize"
    check_signals(neural_data, op, ranks=(1, 2, 3, 4, 5))
    _check_eps(eps, op)
    low, high = (float(v) for v in feature_range)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InputError(f"{op}: feature_range must be finite (low, high) with low < high; got {feature_range!r}.")
    x = neural_data
    dims = _dims(dim, x.ndim, op)
    keep = _mask_keep(channel_mask, x, op)
    if keep is None:
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    else:
        lo = torch.where(keep, x, float("inf")).amin(dim=dims, keepdim=True)
        hi = torch.where(keep, x, float("-inf")).amax(dim=dims, keepdim=True)
        empty = torch.isinf(lo)  # a sample whose every entry is masked
        lo, hi = torch.where(empty, 0, lo), torch.where(empty, 0, hi)
    out = low + (high - low) * (x - lo) / _safe_scale(hi - lo, eps)
    if clip:
        out = out.clamp(low, high)
    if keep is not None:
        out = torch.where(keep, out, 0)
    return out


def robust_normalize(
    neural_data: torch.Tensor,
    dim: int | Sequence[int] = -1,
    *,
    quantile_range: tuple[float, float] = (25.0, 75.0),
    unit_variance: bool = False,
    eps: float = 1e-8,
    clip: float | None = None,
    channel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Subtract the median and divide by the interquartile range over ``dim``.

    Like scikit-learn's ``RobustScaler`` applied per sample: quantiles use linear
    interpolation (``numpy.percentile``'s default, as ``scipy.stats.iqr``), so outliers and
    artefacts barely move the statistics.

    Args:
        neural_data: Any float tensor; (batch, channels, time) is the usual layout.
        dim: Axis or axes the statistics run over (default: time).
        quantile_range: Percentiles ``(q_low, q_high)`` of the spread, 0 <= q_low < q_high <= 100.
        unit_variance: Also divide by the spread of a standard normal over the same range
            (1.349 for 25–75), so Gaussian data comes out with standard deviation ~1.
        eps: A spread at or below ``eps`` is replaced by 1 (constant signals map to 0).
        clip: If given, clamp the result to ``[-clip, clip]``.
        channel_mask: Optional bool mask, (batch, channels) or (channels,), True = real data.
            Masked channels do not enter the statistics and come out as 0.

    Returns:
        Scaled tensor of the input's shape, dtype and device.

    Example:
        >>> x = torch.randn(4, 16, 1000) * 3 + 1
        >>> y = robust_normalize(x)
        >>> float(y.quantile(0.5, dim=-1).abs().max()) < 1e-5  # each channel's median is now 0
        True
    """
    op = "robust_normalize"
    check_signals(neural_data, op, ranks=(1, 2, 3, 4, 5))
    _check_eps(eps, op)
    q_low, q_high = (float(v) for v in quantile_range)
    if not (0 <= q_low < q_high <= 100):
        raise InputError(f"{op}: quantile_range must satisfy 0 <= low < high <= 100 (percent); got {quantile_range!r}.")
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise InputError(f"{op}: clip must be a positive finite number or None; got {clip!r}.")
    x = neural_data
    dims = _dims(dim, x.ndim, op)
    keep = _mask_keep(channel_mask, x, op)
    median, lo, hi = _quantiles(x, keep, dims, (0.5, q_low / 100, q_high / 100))
    spread = hi - lo
    if unit_variance:
        normal = NormalDist()
        spread = spread / (normal.inv_cdf(q_high / 100) - normal.inv_cdf(q_low / 100))
    out = (x - median) / _safe_scale(spread, eps)
    if keep is not None:
        out = torch.where(keep, out, 0)
    if clip is not None:
        out = out.clamp(-clip, clip)
    return out


def _check_axis_names(axes: tuple[str, ...]) -> tuple[str, ...]:
    if not axes:
        raise ValueError("name at least one axis, e.g. ('time',)")
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes must be distinct; got {axes}")
    return axes


def _require_named_axes(op: str, axes: tuple[str, ...], spec: SignalSpec) -> SignalSpec:
    missing = [a for a in axes if a not in spec.axes]
    if missing:
        raise SpecError(
            f"{op} over axes {missing}, but the data has axes {spec.axes}; name axes the data has "
            "(e.g. axes=('time',)) or place the step after the one that creates the axis."
        )
    return spec


class ZScore(Transform):
    """Z-score each sample over the named axes (default: each channel over time).

    Args:
        axes: Axes the statistics run over; never the batch axis (a sample's output must not
            depend on the rest of its batch). ``("time",)`` on a spectrogram z-scores each
            frequency bin over time, as BrainBERT does.
        eps: Standard deviations at or below ``eps`` are replaced by 1.
        clip: Optional clamp of the output to ``[-clip, clip]``.
        ddof: 0 (population std) or 1 (sample std).

    Example:
        >>> ZScore(axes=("channel", "time"), clip=10.0)
    """

    op: ClassVar[str] = "zscore"
    recording_safe: ClassVar[bool] = False
    axes: tuple[AxisName, ...] = ("time",)
    eps: float = pydantic.Field(default=1e-8, gt=0)
    clip: float | None = pydantic.Field(default=None, gt=0)
    ddof: Literal[0, 1] = 0

    _distinct_axes = pydantic.field_validator("axes")(_check_axis_names)

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        return _require_named_axes(self.op, self.axes, spec)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        dims = tuple(batch.axis(a) for a in self.axes)
        out = zscore_normalize(
            batch.signals, dim=dims, eps=self.eps, clip=self.clip, ddof=self.ddof, channel_mask=batch.channel_mask
        )
        return batch.replace(signals=out)


class MinMax(Transform):
    """Min-max scale each sample over the named axes (default: each channel over time).

    Args:
        axes: Axes the minimum and maximum run over; never the batch axis.
        feature_range: Target ``(low, high)``.
        eps: Ranges at or below ``eps`` are replaced by 1.
        clip: Clamp the output to ``feature_range``.

    Example:
        >>> MinMax(axes=("time",), feature_range=(-1.0, 1.0))
    """

    op: ClassVar[str] = "minmax"
    recording_safe: ClassVar[bool] = False
    axes: tuple[AxisName, ...] = ("time",)
    feature_range: tuple[float, float] = (0.0, 1.0)
    eps: float = pydantic.Field(default=1e-8, ge=0)
    clip: bool = False

    _distinct_axes = pydantic.field_validator("axes")(_check_axis_names)

    @pydantic.field_validator("feature_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError(f"feature_range must be (low, high) with low < high; got {value}")
        return value

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        return _require_named_axes(self.op, self.axes, spec)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        self.output_spec(batch.spec)
        out = minmax_normalize(
            batch.signals,
            dim=tuple(batch.axis(a) for a in self.axes),
            feature_range=self.feature_range,
            eps=self.eps,
            clip=self.clip,
            channel_mask=batch.channel_mask,
        )
        return batch.replace(signals=out)


class RobustScale(Transform):
    """Subtract the median and divide by the interquartile range over the named axes.

    Args:
        axes: Axes the statistics run over (default: each channel over time); never batch.
        quantile_range: Percentiles of the spread (default the quartiles, 25–75).
        unit_variance: Rescale so Gaussian data gets standard deviation ~1.
        eps: Spreads at or below ``eps`` are replaced by 1.
        clip: Optional clamp of the output to ``[-clip, clip]``.

    Example:
        >>> RobustScale(axes=("time",), clip=20.0)
    """

    op: ClassVar[str] = "robust_scale"
    recording_safe: ClassVar[bool] = False
    axes: tuple[AxisName, ...] = ("time",)
    quantile_range: tuple[float, float] = (25.0, 75.0)
    unit_variance: bool = False
    eps: float = pydantic.Field(default=1e-8, ge=0)
    clip: float | None = pydantic.Field(default=None, gt=0)

    _distinct_axes = pydantic.field_validator("axes")(_check_axis_names)

    @pydantic.field_validator("quantile_range")
    @classmethod
    def _percentiles(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] < value[1] <= 100:
            raise ValueError(f"quantile_range must satisfy 0 <= low < high <= 100 (percent); got {value}")
        return value

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        return _require_named_axes(self.op, self.axes, spec)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        self.output_spec(batch.spec)
        out = robust_normalize(
            batch.signals,
            dim=tuple(batch.axis(a) for a in self.axes),
            quantile_range=self.quantile_range,
            unit_variance=self.unit_variance,
            eps=self.eps,
            clip=self.clip,
            channel_mask=batch.channel_mask,
        )
        return batch.replace(signals=out)
