"""Spatial operations: electrode selection (first / random / variance), selection by channel
name, and fixed spatial filters (a saved montage matrix).

Selections are resolved from channel metadata by name or by index once, then applied with one
``index_select``/``gather``; metadata (names, positions, mask) follows the chosen channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar, Literal

import pydantic
import torch

from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import InputError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing._montage import Montage
from neurocrane.preprocessing._tensor import check_signals

__all__ = [
    "select_electrode_indices",
    "select_electrodes",
    "select_channel_indices",
    "apply_spatial_filter",
    "SelectElectrodes",
    "RandomElectrodes",
    "SelectChannels",
    "SpatialFilter",
]

Strategy = Literal["first", "random", "variance"]


def _check_max(max_electrodes: int, op: str) -> int:
    if isinstance(max_electrodes, bool) or not isinstance(max_electrodes, int) or max_electrodes < 1:
        raise InputError(f"{op}: max_electrodes must be an integer >= 1; got {max_electrodes!r}.")
    return max_electrodes


def _per_sample_variance(x: torch.Tensor) -> torch.Tensor:
    """(batch, channels) variance over every axis after the channel axis."""
    return x.detach().flatten(2).var(dim=2, correction=0)


def select_electrode_indices(
    neural_data: torch.Tensor,
    max_electrodes: int,
    strategy: Strategy = "first",
    variance: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    channel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which electrodes :func:`select_electrodes` keeps.

    Args:
        neural_data: (batch, channels, ...) or (channels, time).
        max_electrodes: Keep at most this many (all of them when there are fewer).
        strategy: ``"first"``, ``"random"`` (uniform, no repeats) or ``"variance"``
            (highest variance first).
        variance: Precomputed variance, (channels,) for one choice shared by the batch or
            (batch, channels) for one per sample. Default (variance strategy): each sample's
            own variance over time, so a sample's choice never depends on its batch.
        generator: Random source for ``"random"`` (default: torch's global generator).
        channel_mask: Optional (batch, channels) or (channels,) bool, True = good. The
            variance strategy picks masked channels last.

    Returns:
        Long tensor of channel indices in increasing (original) order, on the data's device:
        (k,) when the choice is shared by the batch, (batch, k) when it is per sample, with
        ``k = min(max_electrodes, channels)``.

    Example:
        >>> x = torch.randn(2, 16, 100)
        >>> select_electrode_indices(x, 4, "first").tolist()
        [0, 1, 2, 3]
    """
    op = "select_electrodes"
    check_signals(neural_data, op, ranks=(2, 3, 4))
    x = neural_data.unsqueeze(0) if neural_data.ndim == 2 else neural_data
    n_channels = x.shape[1]
    k = min(_check_max(max_electrodes, op), n_channels)
    if strategy == "first":
        return torch.arange(k, device=x.device)
    if strategy == "random":
        device = generator.device if generator is not None else torch.device("cpu")
        perm = torch.randperm(n_channels, generator=generator, device=device)
        return perm[:k].sort().values.to(x.device)
    if strategy != "variance":
        raise InputError(f"{op}: strategy must be 'first', 'random' or 'variance'; got {strategy!r}.")
    if variance is None:
        score = _per_sample_variance(x)
    else:
        score = torch.as_tensor(variance, device=x.device).detach()
        if score.shape not in ((n_channels,), (x.shape[0], n_channels)):
            raise InputError(
                f"{op}: variance must have shape (channels,) = ({n_channels},) or (batch, channels) "
                f"= ({x.shape[0]}, {n_channels}); got {tuple(score.shape)}."
            )
    score = score.to(torch.float64)
    if channel_mask is not None:
        good = torch.as_tensor(channel_mask, device=x.device).to(torch.bool)
        if good.shape not in ((n_channels,), (x.shape[0], n_channels)):
            raise InputError(
                f"{op}: channel_mask must have shape (batch, channels) or (channels,); got {tuple(good.shape)}."
            )
        score = torch.where(good, score, torch.full_like(score, -torch.inf))
    # stable sort: ties go to the lower channel index, on every device
    order = score.sort(dim=-1, descending=True, stable=True).indices
    return order[..., :k].sort(dim=-1).values


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if idx.ndim == 1:
        return x.index_select(1, idx)
    shape = (*idx.shape, *x.shape[2:])
    return x.gather(1, idx.reshape(*idx.shape, *([1] * (x.ndim - 2))).expand(shape))


def select_electrodes(
    neural_data: torch.Tensor,
    max_electrodes: int,
    strategy: Strategy = "first",
    variance: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    channel_mask: torch.Tensor | None = None,
    return_indices: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Keep a subset of at most ``max_electrodes`` electrodes.

    Args:
        neural_data: (batch, channels, time), (batch, channels, freqs, time) or (channels, time).
        max_electrodes: Maximum number of electrodes to keep (>= 1).
        strategy: ``"first"``, ``"random"`` or ``"variance"`` (highest variance, per sample
            unless a shared ``variance`` is given). Kept electrodes stay in their original order.
        variance: Optional precomputed variance, (channels,) or (batch, channels).
        generator: Random source for ``"random"``.
        channel_mask: Optional good-channel mask; the variance strategy picks masked ones last.
        return_indices: Also return the indices from :func:`select_electrode_indices`.

    Returns:
        Data with ``min(max_electrodes, channels)`` channels, same rank as the input
        (and the indices, if asked).

    Example:
        >>> data = torch.randn(32, 256, 2000)
        >>> select_electrodes(data, max_electrodes=128, strategy="variance").shape
        torch.Size([32, 128, 2000])
    """
    idx = select_electrode_indices(
        neural_data, max_electrodes, strategy, variance, generator, channel_mask=channel_mask
    )
    if neural_data.ndim == 2:
        out = _take(neural_data.unsqueeze(0), idx if idx.ndim == 1 else idx[:1]).squeeze(0)
        idx = idx if idx.ndim == 1 else idx[0]
    else:
        out = _take(neural_data, idx)
    return (out, idx) if return_indices else out


def select_channel_indices(
    channel_names: Sequence[str],
    keep: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    *,
    missing: Literal["error", "ignore"] = "error",
    op: str = "select_channels",
) -> list[int]:
    """Indices of the channels to keep, resolved by name.

    Args:
        channel_names: The data's channel names.
        keep: Channels to keep, in the output order given here (default: all, in data order).
        drop: Channels to leave out.
        missing: ``"error"`` (default): a name in ``keep``/``drop`` that the data lacks is
            an error; ``"ignore"``: such names are skipped.
        op: Name used in error messages.

    Returns:
        Source indices into ``channel_names``.

    Example:
        >>> select_channel_indices(["LA1", "LA2", "LB1"], drop=["LA2"])
        [0, 2]
    """
    names = list(channel_names)
    lookup = {n: i for i, n in enumerate(names)}
    wanted = [str(n) for n in (names if keep is None else keep)]
    dropped = {str(n) for n in drop}
    if missing == "error":
        absent = [n for n in [*wanted, *sorted(dropped)] if n not in lookup]
        if absent:
            raise InputError(
                f"{op}: channels {absent[:10]} are not in the data ({len(names)} channels: "
                f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}); fix the names, or "
                "pass missing='ignore' to skip absent channels."
            )
    elif missing != "ignore":
        raise InputError(f"{op}: missing must be 'error' or 'ignore'; got {missing!r}.")
    if len(set(wanted)) != len(wanted):
        raise InputError(f"{op}: keep lists a channel more than once: {wanted}.")
    out = [lookup[n] for n in wanted if n in lookup and n not in dropped]
    if not out:
        raise InputError(f"{op}: no channel is left (keep={keep}, drop={sorted(dropped)}).")
    return out


def apply_spatial_filter(neural_data: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mix channels with a fixed (channels_out, channels_in) matrix: ``out = weights @ x``.

    Args:
        neural_data: (batch, channels_in, ...) or (channels_in, time).
        weights: (channels_out, channels_in) matrix (moved to the data's device and dtype).

    Returns:
        (batch, channels_out, ...) or (channels_out, time).

    Example:
        >>> car = torch.eye(4) - 0.25
        >>> apply_spatial_filter(torch.randn(2, 4, 100), car).shape
        torch.Size([2, 4, 100])
    """
    op = "apply_spatial_filter"
    check_signals(neural_data, op, ranks=(2, 3, 4))
    x = neural_data.unsqueeze(0) if neural_data.ndim == 2 else neural_data
    w = torch.as_tensor(weights)
    if w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise InputError(
            f"{op}: weights must be (channels_out, channels_in) with channels_in = {x.shape[1]}; got {tuple(w.shape)}."
        )
    out = torch.einsum("oc,bc...->bo...", w.to(device=x.device, dtype=x.dtype), x)
    return out.squeeze(0) if neural_data.ndim == 2 else out


# -- nodes ----------------------------------------------------------------------------------
def _subset(batch: NeuralBatch, idx: list[int]) -> NeuralBatch:
    """The batch restricted to source channels ``idx`` (metadata follows by source index)."""
    if idx == list(range(batch.n_channels)):
        return batch
    index = torch.tensor(idx, device=batch.device)
    pos, mask = batch.channel_positions, batch.channel_mask
    return batch.replace(
        signals=batch.signals.index_select(1, index),
        channel_names=tuple(batch.channel_names[i] for i in idx),
        channel_positions=None if pos is None else pos[torch.tensor(idx, device=pos.device)],
        channel_mask=None if mask is None else mask[:, torch.tensor(idx, device=mask.device)],
    )


def _with_channels(spec: SignalSpec, n: int | None, names: tuple[str, ...] | None) -> SignalSpec:
    return spec.replace(shape=(spec.shape[0], n, *spec.shape[2:]), channel_names=names)


class SelectElectrodes(Transform):
    """Keep at most ``max_electrodes`` electrodes: the first ones, or the highest-variance ones.

    Args:
        max_electrodes: Maximum number of electrodes kept (>= 1).
        strategy: ``"first"``: channel names, positions and mask follow the kept channels.
            ``"variance"``: each sample keeps its own highest-variance electrodes (masked
            channels last), in their original order, so its output never depends on the
            rest of its batch. The chosen channels then differ between samples, while channel
            metadata is shared by the batch, so outputs are named ``sel0 .. sel{k-1}``,
            positions are dropped and the mask is gathered per sample. With no more channels
            than ``max_electrodes`` both strategies leave the batch unchanged.

    For a random choice (training augmentation) use :class:`RandomElectrodes`.

    Example:
        >>> SelectElectrodes(max_electrodes=128, strategy="variance")
    """

    op: ClassVar[str] = "select_electrodes"
    max_electrodes: int = pydantic.Field(ge=1)
    strategy: Literal["first", "variance"] = "first"

    @property
    def recording_safe(self) -> bool:  # type: ignore[override]
        return self.strategy == "first"  # a variance choice is a per-window statistic

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        n = spec.n_channels
        if n is not None and n <= self.max_electrodes:
            return spec
        k = self.max_electrodes
        if self.strategy == "variance":
            return _with_channels(spec, k, tuple(f"sel{i}" for i in range(k)))
        names = None if spec.channel_names is None else spec.channel_names[:k]
        return _with_channels(spec, k, names)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        if batch.n_channels <= self.max_electrodes:
            return batch
        if self.strategy == "first":
            return _subset(batch, list(range(self.max_electrodes)))
        idx = select_electrode_indices(batch.signals, self.max_electrodes, "variance", channel_mask=batch.channel_mask)
        mask = batch.channel_mask
        return batch.replace(
            signals=_take(batch.signals, idx),
            channel_names=tuple(f"sel{i}" for i in range(idx.shape[1])),
            channel_positions=None,
            channel_mask=None if mask is None else mask.gather(1, idx.to(mask.device)),
        )


class RandomElectrodes(Transform):
    """Training augmentation: keep a random subset of at most ``max_electrodes`` electrodes.

    One choice per call is shared by the batch (channel metadata is shared) and drawn
    independently of the data; kept electrodes stay in their original order and names,
    positions and mask follow them. Skipped in eval mode.

    Args:
        max_electrodes: Maximum number of electrodes kept (>= 1).
        seed: With a seed, the node draws from its own generator (a reproducible stream of
            choices starting at ``seed``); without one, from torch's global generator, which
            Lightning seeds and DataLoader workers reseed.

    Example:
        >>> RandomElectrodes(max_electrodes=64, seed=0)
    """

    op: ClassVar[str] = "random_electrodes"
    training_only: ClassVar[bool] = True
    max_electrodes: int = pydantic.Field(ge=1)
    seed: int | None = None
    _rng_state: torch.Tensor | None = pydantic.PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # the generator state is not a parameter: equal parameters mean equal steps
        return type(other) is type(self) and self.model_dump() == other.model_dump()  # type: ignore[union-attr]

    __hash__ = Transform.__hash__

    def _generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        g = torch.Generator()
        if self._rng_state is None:
            g.manual_seed(self.seed)
        else:
            g.set_state(self._rng_state)
        return g

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        n = spec.n_channels
        if n is not None and n <= self.max_electrodes:
            return spec
        return _with_channels(spec, self.max_electrodes, None)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        if batch.n_channels <= self.max_electrodes:
            return batch
        g = self._generator()
        idx = select_electrode_indices(batch.signals, self.max_electrodes, "random", generator=g)
        if g is not None:
            self._rng_state = g.get_state()
        return _subset(batch, idx.tolist())


class SelectChannels(Transform):
    """Keep or drop channels by name (and, optionally, channels masked as bad).

    Args:
        keep: Channels to keep, in this output order (default: all, in data order).
        drop: Channels to drop.
        drop_masked: Also drop channels whose ``channel_mask`` is False in every sample of
            the batch (bad channels of a session). A channel bad in only some samples is kept
            and stays masked, so a sample's kept values never depend on its batch.
        missing: ``"error"``: a listed channel the data lacks is an error; ``"ignore"``: skip it.

    Names, positions and mask follow the kept channels (resolved once by name).

    Example:
        >>> SelectChannels(drop=["EKG", "DC1"], drop_masked=True)
    """

    op: ClassVar[str] = "select_channels"
    keep: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    drop_masked: bool = False
    missing: Literal["error", "ignore"] = "error"

    @pydantic.field_validator("keep")
    @classmethod
    def _distinct(cls, keep: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if keep is not None:
            if not keep:
                raise ValueError("keep must name at least one channel (or be None for all)")
            if len(set(keep)) != len(keep):
                raise ValueError("keep lists a channel more than once")
        return keep

    def _indices(self, names: Sequence[str], bad: set[str]) -> list[int]:
        drop = (*self.drop, *(n for n in names if n in bad and n not in self.drop))
        return select_channel_indices(names, self.keep, drop, missing=self.missing, op=self.op)

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        if spec.channel_names is None:
            if self.keep is not None and self.missing == "error" and not self.drop and not self.drop_masked:
                return _with_channels(spec, len(self.keep), self.keep)
            return _with_channels(spec, None, None)
        if self.drop_masked:
            self._indices(spec.channel_names, set())  # checks the names; the count is data-dependent
            return _with_channels(spec, None, None)
        names = tuple(spec.channel_names[i] for i in self._indices(spec.channel_names, set()))
        return _with_channels(spec, len(names), names)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        bad: set[str] = set()
        if self.drop_masked and batch.channel_mask is not None:
            always_bad = (~batch.channel_mask).all(dim=0).tolist()
            bad = {n for n, b in zip(batch.channel_names, always_bad, strict=True) if b}
        return _subset(batch, self._indices(batch.channel_names, bad))


@lru_cache(maxsize=32)
def _filter_montage(
    weights: tuple[tuple[float, ...], ...], inputs: tuple[str, ...], outputs: tuple[str, ...]
) -> Montage:
    return Montage(weights=torch.tensor(weights, dtype=torch.float64), input_names=inputs, names=outputs)


class SpatialFilter(Transform):
    """A fixed spatial filter: ``out = weights @ x`` over channels named ``input_channels``.

    Use it to store a montage (Laplacian, bipolar, ICA/PCA unmixing, a lab's own) as data.
    Input channels are found in the batch by name, so their order there does not matter;
    batch channels not listed are not used. Outputs are named ``output_channels``; positions
    are dropped (a mixed channel has no single location); an output is masked where any
    input with a nonzero weight is.

    Args:
        weights: (channels_out, channels_in) matrix as nested lists.
        input_channels: Names of the columns' channels.
        output_channels: Names of the rows' outputs.

    Example:
        >>> SpatialFilter(weights=[[1.0, -1.0]], input_channels=["LA1", "LA2"], output_channels=["LA1-LA2"])
    """

    op: ClassVar[str] = "spatial_filter"
    weights: tuple[tuple[float, ...], ...]
    input_channels: tuple[str, ...]
    output_channels: tuple[str, ...]

    @pydantic.model_validator(mode="after")
    def _shapes(self) -> SpatialFilter:
        rows, cols = len(self.weights), len(self.input_channels)
        if rows == 0 or cols == 0:
            raise ValueError("weights, input_channels and output_channels must not be empty")
        if rows != len(self.output_channels):
            raise ValueError(f"weights has {rows} rows but {len(self.output_channels)} output_channels are named")
        widths = sorted({len(r) for r in self.weights})
        if widths != [cols]:
            raise ValueError(f"every row of weights needs {cols} values (one per input channel); got widths {widths}")
        for field in ("input_channels", "output_channels"):
            names = getattr(self, field)
            if len(set(names)) != len(names):
                raise ValueError(f"{field} must be unique")
        return self

    @classmethod
    def from_montage(cls, montage: Montage) -> SpatialFilter:
        """Freeze a montage (e.g. from :func:`laplacian_montage`) into a stored filter."""
        return cls(weights=montage.weights.tolist(), input_channels=montage.input_names, output_channels=montage.names)

    def montage(self) -> Montage:
        """The filter as a :class:`~neurocrane.preprocessing._montage.Montage` (cached)."""
        return _filter_montage(self.weights, self.input_channels, self.output_channels)

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        if spec.channel_names is not None:
            missing = [n for n in self.input_channels if n not in spec.channel_names]
            if missing:
                raise InputError(f"{self.op}: input channels {missing[:10]} are not in the data.")
        return _with_channels(spec, len(self.output_channels), self.output_channels).replace(has_positions=False)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        return self.montage().apply_to_batch(batch)
