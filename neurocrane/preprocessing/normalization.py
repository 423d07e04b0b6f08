"""Normalization: z-score (and, in later modules, min-max and robust scaling).

Statistics are computed per sample (never across the batch) unless the caller explicitly
names the batch axis in the functional form, and channels marked False in a channel mask
neither enter the statistics nor become NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import pydantic
import torch

from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import InputError, SpecError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing._tensor import check_signals

__all__ = ["zscore_normalize", "ZScore"]

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


def _mask_weights(channel_mask: torch.Tensor | None, x: torch.Tensor, op: str) -> torch.Tensor | None:
    """Broadcastable 0/1 weights from a (batch, channels) or (channels,) mask; None if all kept."""
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
    return mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.ndim - mask.ndim)))


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
    x = neural_data
    dims = _dims(dim, x.ndim, "zscore_normalize")
    w = _mask_weights(channel_mask, x, "zscore_normalize")
    if w is None:
        var, mean = torch.var_mean(x, dim=dims, correction=ddof, keepdim=True)
    else:
        wx = w.expand_as(x)
        count = wx.sum(dim=dims, keepdim=True)
        mean = (x * wx).sum(dim=dims, keepdim=True) / count.clamp_min(1)
        var = (((x - mean) ** 2) * wx).sum(dim=dims, keepdim=True) / (count - ddof).clamp_min(1)
    std = var.sqrt()
    std = torch.where(std > eps, std, torch.ones_like(std))
    out = (x - mean) / std
    if w is not None:
        out = out * w
    if clip is not None:
        out = out.clamp(-clip, clip)
    return out


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

    @pydantic.field_validator("axes")
    @classmethod
    def _distinct_axes(cls, axes: tuple[str, ...]) -> tuple[str, ...]:
        if not axes:
            raise ValueError("name at least one axis, e.g. ('time',)")
        if len(set(axes)) != len(axes):
            raise ValueError(f"axes must be distinct; got {axes}")
        return axes

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        missing = [a for a in self.axes if a not in spec.axes]
        if missing:
            raise SpecError(f"zscore over axes {missing}, but the data has axes {spec.axes}.")
        return spec

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        dims = tuple(batch.axis(a) for a in self.axes)
        out = zscore_normalize(
            batch.signals, dim=dims, eps=self.eps, clip=self.clip, ddof=self.ddof, channel_mask=batch.channel_mask
        )
        return batch.replace(signals=out)
