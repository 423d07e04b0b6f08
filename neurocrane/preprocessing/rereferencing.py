"""Re-referencing: common average (CAR), Laplacian and bipolar montages.

Each operation is a pure tensor function and a registered :class:`Transform` node beside it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from neurocrane.batch import NeuralBatch
from neurocrane.errors import InputError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing._tensor import batched, unbatched

__all__ = ["common_average_rereference", "CommonAverageReference"]


def _masked_median(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Median over the channel axis (dim 1) of ``x`` (B, C, T), averaging the two middle values
    for an even count (as numpy does); channels where ``keep`` is False are ignored."""
    if keep is None:
        n = torch.full((x.shape[0], 1, 1), x.shape[1], device=x.device)
        ordered = x.sort(dim=1).values
    else:
        k = keep[:, :, None].expand_as(x)
        ordered = torch.where(k, x, torch.full_like(x, float("inf"))).sort(dim=1).values
        n = keep.sum(dim=1).reshape(-1, 1, 1)
    n = n.clamp_min(1)
    lo = ((n - 1) // 2).expand(-1, 1, x.shape[2])
    hi = (n // 2).expand(-1, 1, x.shape[2])
    return 0.5 * (ordered.gather(1, lo) + ordered.gather(1, hi))


def common_average_rereference(
    neural_data: torch.Tensor,
    keepdim: bool = True,
    *,
    channel_mask: torch.Tensor | None = None,
    method: Literal["mean", "median"] = "mean",
) -> torch.Tensor:
    """Apply the common average reference (CAR).

    Subtracts, at every time point, the mean (or median) over channels. Channels where
    ``channel_mask`` is False (bad or padding channels) do not enter the average and are
    returned unchanged.

    Args:
        neural_data: Shape (batch, channels, time) or (channels, time).
        keepdim: If True (default), return the re-referenced data, same shape as the input.
            If False, return the reference signal itself, with the channel axis removed:
            (batch, time) or (time,).
        channel_mask: Optional bool mask, (batch, channels) or (channels,); True = use.
        method: ``"mean"`` (classic CAR) or ``"median"`` (robust to outlier channels).

    Returns:
        Re-referenced data of the input's shape (or the reference, see ``keepdim``).

    Example:
        >>> data = torch.randn(32, 128, 2000)
        >>> rereferenced = common_average_rereference(data)
        >>> torch.allclose(rereferenced.mean(dim=1), torch.zeros(32, 2000), atol=1e-5)
        True
    """
    x, was_unbatched = batched(neural_data, "common_average_rereference")
    keep = None
    if channel_mask is not None:
        keep = torch.as_tensor(channel_mask, device=x.device).to(torch.bool)
        if keep.ndim == 1:
            keep = keep.expand(x.shape[0], -1)
        if keep.shape != x.shape[:2]:
            raise InputError(
                f"common_average_rereference: channel_mask must have shape (batch, channels) = "
                f"{tuple(x.shape[:2])} or (channels,); got {tuple(channel_mask.shape)}."
            )
        if bool(keep.all()):
            keep = None
    if method == "mean":
        if keep is None:
            ref = x.mean(dim=1, keepdim=True)
        else:
            w = keep.to(x.dtype)[:, :, None]
            ref = (x * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp_min(1)
    elif method == "median":
        ref = _masked_median(x, keep)
    else:
        raise InputError(f"common_average_rereference: method must be 'mean' or 'median'; got {method!r}.")
    if not keepdim:
        return unbatched(ref.squeeze(1), was_unbatched)
    out = x - ref
    if keep is not None:
        out = torch.where(keep[:, :, None], out, x)
    return unbatched(out, was_unbatched)


class CommonAverageReference(Transform):
    """Common average reference: subtract the across-channel mean (or median) at each time point.

    Args:
        method: ``"mean"`` or ``"median"``.
        exclude_masked: Leave channels marked False in the batch's ``channel_mask`` out of
            the average (and unchanged).

    Channel metadata is unchanged.

    Example:
        >>> CommonAverageReference(method="median")
    """

    op: ClassVar[str] = "car"
    method: Literal["mean", "median"] = "mean"
    exclude_masked: bool = True

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        if batch.axes != ("batch", "channel", "time"):
            # spectral data: reference each frequency/feature slice the same way
            x = batch.signals.movedim(1, -2)
            shape = x.shape
            x = x.reshape(-1, shape[-2], shape[-1])
            mask = batch.channel_mask
            if mask is not None and self.exclude_masked:
                reps = x.shape[0] // mask.shape[0]
                mask = mask.repeat_interleave(reps, dim=0)
            else:
                mask = None
            out = common_average_rereference(x, channel_mask=mask, method=self.method)
            return batch.replace(signals=out.reshape(shape).movedim(-2, 1))
        mask = batch.channel_mask if self.exclude_masked else None
        return batch.replace(
            signals=common_average_rereference(batch.signals, channel_mask=mask, method=self.method)
        )
