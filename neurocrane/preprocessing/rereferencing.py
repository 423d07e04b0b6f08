"""Re-referencing: common average (CAR), Laplacian and bipolar montages.

Each operation is a pure tensor function and a registered :class:`Transform` node beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar, Literal

import pydantic
import torch

from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import InputError, SpecError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing._montage import (
    Montage,
    check_finite,
    check_positions,
    default_names,
    label_neighbours,
    parse_label,
    parse_labels,
    positions_from_key,
    positions_key,
)
from neurocrane.preprocessing._tensor import batched, unbatched

__all__ = [
    "common_average_rereference",
    "CommonAverageReference",
    "laplacian_rereference",
    "laplacian_montage",
    "LaplacianReference",
    "bipolar_rereference",
    "bipolar_montage",
    "BipolarReference",
    "parse_contact_label",
    "Montage",
]


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
        return batch.replace(signals=common_average_rereference(batch.signals, channel_mask=mask, method=self.method))


# -- labels ---------------------------------------------------------------------------------
def parse_contact_label(label: str) -> tuple[str, int]:
    """Split an SEEG contact label into its shaft stem and contact number.

    The contact number is the run of trailing digits; the stem is everything before it and
    must contain a letter. For the usual labels this is "the label up to and including its
    last letter" (BrainBERT, Neuroprobe); separators such as ``'`` or ``-`` before the
    digits stay in the stem (``"LA'3"`` → ``("LA'", 3)``).

    Args:
        label: A channel name such as ``"LA12"``.

    Returns:
        ``(stem, number)``.

    Raises:
        InputError: if the label has no trailing digits or no letter before them.

    Example:
        >>> parse_contact_label("O1aIb4")
        ('O1aIb', 4)
        >>> parse_contact_label("LA12")
        ('LA', 12)
    """
    parsed = parse_label(label)
    if parsed is None:
        parse_labels([label], "parse_contact_label", "label")
    return parsed  # type: ignore[return-value]


# -- Laplacian ------------------------------------------------------------------------------
NeighbourRule = Literal["any", "both"]
NonLaplacian = Literal["keep", "drop"]
LaplacianMode = Literal["auto", "positions", "labels", "adjacent"]


def _choice(value: str, allowed: tuple[str, ...], name: str, op: str) -> str:
    if value not in allowed:
        raise InputError(f"{op}: {name} must be one of {list(allowed)}; got {value!r}.")
    return value


@lru_cache(maxsize=128)
def _laplacian_cached(
    names: tuple[str, ...],
    pos_key: bytes | None,
    mode: str,
    neighbor_distance: float,
    require_neighbors: str,
    non_laplacian: str,
    op: str,
) -> Montage:
    n = len(names)
    if mode == "positions":
        pos = positions_from_key(pos_key)
        # rows with a NaN/inf coordinate (unknown location) compare False: no neighbours
        adjacency = torch.cdist(pos, pos) <= neighbor_distance
        adjacency &= ~torch.eye(n, dtype=torch.bool)
    elif mode == "labels":
        adjacency = torch.zeros(n, n, dtype=torch.bool)
        for i, nbrs in enumerate(label_neighbours(names, op)):
            adjacency[i, nbrs] = True
    else:
        adjacency = torch.diag(torch.ones(n - 1, dtype=torch.bool), 1) | torch.diag(
            torch.ones(n - 1, dtype=torch.bool), -1
        )
    count = adjacency.sum(dim=1)
    usable = count >= (2 if require_neighbors == "both" else 1)
    eye = torch.eye(n, dtype=torch.float64)
    weights = eye - adjacency.to(torch.float64) / count.clamp_min(1)[:, None]
    weights = torch.where(usable[:, None], weights, eye)
    rows = torch.arange(n) if non_laplacian == "keep" else usable.nonzero().flatten()
    if rows.numel() == 0:
        raise InputError(
            f"{op}: no electrode has {'both' if require_neighbors == 'both' else 'a'} neighbour"
            f"{'s' if require_neighbors == 'both' else ''} (mode={mode!r}"
            + (f", neighbor_distance={neighbor_distance:g} mm" if mode == "positions" else "")
            + f", {n} channels), so non_laplacian='drop' leaves nothing. Check the channel "
            "labels/positions, use require_neighbors='any', or non_laplacian='keep'."
        )
    idx = rows.tolist()
    return Montage(
        weights=weights[rows].contiguous(),
        input_names=names,
        names=tuple(names[i] for i in idx),
        position_weights=eye[rows].contiguous(),
    )


def laplacian_montage(
    channel_names: Sequence[str] | None = None,
    electrode_positions: torch.Tensor | None = None,
    *,
    n_channels: int | None = None,
    mode: LaplacianMode = "auto",
    neighbor_distance: float = 5.0,
    require_neighbors: NeighbourRule = "any",
    non_laplacian: NonLaplacian = "keep",
    op: str = "laplacian_montage",
) -> Montage:
    """Build the Laplacian weight matrix for a set of channels (cached).

    Args:
        channel_names: Channel labels (needed for ``mode="labels"``; they also name the output).
        electrode_positions: (channels, 3) positions in mm (needed for ``mode="positions"``).
        n_channels: Number of channels when neither names nor positions are given.
        mode: How neighbours are found. ``"positions"``: electrodes within
            ``neighbor_distance`` mm (itself excluded; electrodes with a non-finite
            coordinate have none). ``"labels"``: contact number ±1 on the same shaft stem
            (see :func:`parse_contact_label`). ``"adjacent"``: channels i-1 and i+1.
            ``"auto"``: positions if given, else labels if names are given, else adjacent.
        neighbor_distance: Neighbour radius in mm (positions mode).
        require_neighbors: ``"any"``: an electrode is re-referenced to the mean of the
            neighbours it has (Neuroprobe); ``"both"``: it needs two neighbours (BrainBERT:
            contacts at shaft ends are unusable). In positions mode "both" means "at least two".
        non_laplacian: What to do with electrodes without enough neighbours: ``"keep"`` them
            unreferenced, or ``"drop"`` them.
        op: Name used in error messages.

    Returns:
        A :class:`Montage` whose rows are the output channels.

    Example:
        >>> m = laplacian_montage(["LA1", "LA2", "LA3"], require_neighbors="both", non_laplacian="drop")
        >>> m.names, m.weights.tolist()
        (('LA2',), [[-0.5, 1.0, -0.5]])
    """
    _choice(mode, ("auto", "positions", "labels", "adjacent"), "mode", op)
    _choice(require_neighbors, ("any", "both"), "require_neighbors", op)
    _choice(non_laplacian, ("keep", "drop"), "non_laplacian", op)
    distance = check_finite(neighbor_distance, "neighbor_distance", op)
    if n_channels is not None:
        n = int(n_channels)
    elif channel_names is not None:
        n = len(channel_names)
    elif electrode_positions is not None:
        n = len(electrode_positions)
    else:
        raise InputError(f"{op}: give channel_names, electrode_positions or n_channels.")
    if channel_names is not None and len(channel_names) != n:
        raise InputError(f"{op}: {len(channel_names)} channel_names given for {n} channels; give one per channel.")
    pos = check_positions(electrode_positions, n, op)
    if mode == "auto":
        mode = "positions" if pos is not None else "labels" if channel_names is not None else "adjacent"
    if mode == "positions" and pos is None:
        raise InputError(f"{op}: mode='positions' needs electrode_positions (channels, 3) in mm; none given.")
    if mode == "labels" and channel_names is None:
        raise InputError(f"{op}: mode='labels' needs channel_names (SEEG contact labels); none given.")
    names = default_names(n) if channel_names is None else tuple(str(c) for c in channel_names)
    key = positions_key(pos) if mode == "positions" else None
    return _laplacian_cached(names, key, mode, distance, require_neighbors, non_laplacian, op)


def laplacian_rereference(
    neural_data: torch.Tensor,
    neighbor_distance: float = 5.0,
    electrode_positions: torch.Tensor | None = None,
    *,
    channel_names: Sequence[str] | None = None,
    mode: LaplacianMode = "auto",
    require_neighbors: NeighbourRule = "any",
    non_laplacian: NonLaplacian = "keep",
) -> torch.Tensor:
    """Laplacian re-reference: each electrode minus the mean of its neighbours.

    Neighbours come from positions (within ``neighbor_distance`` mm), from SEEG labels
    (contact number ±1 on the same shaft) or, with neither, from channel order (i ± 1); see
    :func:`laplacian_montage` for every option. The weight matrix is built once per channel
    set and applied with one matrix product.

    Args:
        neural_data: Shape (batch, channels, time) or (channels, time).
        neighbor_distance: Neighbour radius in mm (positions mode). The default, 5 mm, takes
            the next contacts of a typical 3.5 mm-pitch SEEG shaft but not the ones after.
        electrode_positions: Optional (channels, 3) positions in mm.
        channel_names: Optional contact labels (``"LA1"``, ``"LA2"``, ...).
        mode: ``"auto"``, ``"positions"``, ``"labels"`` or ``"adjacent"``.
        require_neighbors: ``"any"`` (Neuroprobe) or ``"both"`` (BrainBERT).
        non_laplacian: ``"keep"`` electrodes without enough neighbours unreferenced, or
            ``"drop"`` them (then fewer channels come out; ``laplacian_montage(...).names``
            says which).

    Returns:
        Re-referenced data, same rank as the input.

    Example:
        >>> data = torch.randn(32, 128, 2000)
        >>> laplacian_rereference(data).shape
        torch.Size([32, 128, 2000])
    """
    op = "laplacian_rereference"
    x, was_unbatched = batched(neural_data, op)
    montage = laplacian_montage(
        channel_names,
        electrode_positions,
        n_channels=x.shape[1],
        mode=mode,
        neighbor_distance=neighbor_distance,
        require_neighbors=require_neighbors,
        non_laplacian=non_laplacian,
        op=op,
    )
    return unbatched(montage.apply(x), was_unbatched)


class LaplacianReference(Transform):
    """Laplacian re-reference: each electrode minus the mean of its neighbours.

    Args:
        mode: ``"labels"`` (default; contact number ±1 on the same shaft, from the channel
            names), ``"positions"`` (within ``neighbor_distance`` mm, from the batch's
            channel positions) or ``"adjacent"`` (channel order i ± 1).
        neighbor_distance: Neighbour radius in mm (positions mode).
        require_neighbors: ``"any"`` (Neuroprobe) or ``"both"`` (BrainBERT).
        non_laplacian: ``"keep"`` (unreferenced) or ``"drop"`` electrodes without enough
            neighbours.

    Channel names, positions and mask follow the output channels; an output is masked when
    the electrode or any of its neighbours is. To leave bad channels out of the neighbour
    means, drop them first (``SelectChannels(drop_masked=True)``): a missing contact is not
    a neighbour.

    Example:
        >>> brainbert = LaplacianReference(require_neighbors="both", non_laplacian="drop")
        >>> neuroprobe = LaplacianReference()
    """

    op: ClassVar[str] = "laplacian"
    mode: Literal["labels", "positions", "adjacent"] = "labels"
    neighbor_distance: float = pydantic.Field(default=5.0, gt=0)
    require_neighbors: NeighbourRule = "any"
    non_laplacian: NonLaplacian = "keep"

    def _montage(self, names: tuple[str, ...], positions: torch.Tensor | None) -> Montage:
        return laplacian_montage(
            names,
            positions if self.mode == "positions" else None,
            mode=self.mode,
            neighbor_distance=self.neighbor_distance,
            require_neighbors=self.require_neighbors,
            non_laplacian=self.non_laplacian,
            op=f"{self.op} (mode={self.mode!r})",
        )

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        if self.mode == "positions":
            if not spec.has_positions and spec.n_times is not None:
                raise SpecError(
                    f"{self.op}: mode='positions' needs channel positions (mm) with the data; "
                    "pass channel_positions=..., or use mode='labels'."
                )
            if self.non_laplacian == "keep":
                return spec
            return spec.replace(shape=(spec.shape[0], None, *spec.shape[2:]), channel_names=None)
        names = spec.channel_names
        if names is None:
            if self.mode == "labels" or spec.n_channels is None:
                keep = self.non_laplacian == "keep"
                return spec if keep else spec.replace(shape=(spec.shape[0], None, *spec.shape[2:]))
            names = default_names(spec.n_channels)
        out = self._montage(names, None).names
        return spec.replace(shape=(spec.shape[0], len(out), *spec.shape[2:]), channel_names=out)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        if self.mode == "positions" and batch.channel_positions is None:
            raise InputError(
                f"{self.op}: mode='positions' needs channel positions (mm) on the batch; "
                "pass channel_positions=..., or use mode='labels'."
            )
        return self._montage(batch.channel_names, batch.channel_positions).apply_to_batch(batch)


# -- bipolar --------------------------------------------------------------------------------
PairsSpec = Literal["sequential", "shaft"] | Sequence[tuple[int | str, int | str]] | None


@lru_cache(maxsize=128)
def _bipolar_cached(names: tuple[str, ...], pairs: tuple[tuple[int, int], ...]) -> Montage:
    n = len(names)
    rows = torch.arange(len(pairs))
    anode = torch.tensor([a for a, _ in pairs])
    cathode = torch.tensor([c for _, c in pairs])
    weights = torch.zeros(len(pairs), n, dtype=torch.float64)
    weights[rows, anode] = 1.0
    weights[rows, cathode] = -1.0
    return Montage(
        weights=weights,
        input_names=names,
        names=tuple(f"{names[a]}-{names[c]}" for a, c in pairs),
        position_weights=weights.abs() * 0.5,
    )


def _resolve_pairs(names: tuple[str, ...], pairs: PairsSpec, op: str) -> tuple[tuple[int, int], ...]:
    n = len(names)
    if pairs is None or (isinstance(pairs, str) and pairs == "sequential"):
        if n < 2:
            raise InputError(f"{op}: sequential bipolar pairs need at least 2 channels; got {n}.")
        return tuple((i, i + 1) for i in range(n - 1))
    if isinstance(pairs, str):
        if pairs != "shaft":
            raise InputError(
                f"{op}: pairs must be 'sequential', 'shaft' or a list of (anode, cathode) pairs; got {pairs!r}."
            )
        parsed = parse_labels(names, op, "pairs='shaft'")
        where = {key: i for i, key in enumerate(parsed)}
        out = tuple((i, where[(s, k + 1)]) for i, (s, k) in enumerate(parsed) if (s, k + 1) in where)
        if not out:
            raise InputError(
                f"{op}: pairs='shaft' found no two contacts numbered n and n+1 on the same shaft "
                f"among {list(names)[:10]}."
            )
        return out
    lookup = {name: i for i, name in enumerate(names)}
    resolved, bad = [], []
    for pair in pairs:
        try:
            a, c = pair
        except (TypeError, ValueError):
            bad.append(pair)
            continue
        ids = []
        for end in (a, c):
            if isinstance(end, str):
                ids.append(lookup.get(end))
            elif isinstance(end, int) and not isinstance(end, bool) and 0 <= end < n:
                ids.append(end)
            else:
                ids.append(None)
        if None in ids:
            bad.append(tuple(pair))
        else:
            resolved.append((ids[0], ids[1]))
    if bad:
        raise InputError(
            f"{op}: pairs {bad[:10]} name channels that are not in the data ({n} channels: "
            f"{', '.join(list(names)[:8])}{', ...' if n > 8 else ''}); give channel indices "
            f"0..{n - 1} or channel names, as (anode, cathode) pairs."
        )
    if not resolved:
        raise InputError(f"{op}: pairs is empty; give at least one (anode, cathode) pair.")
    same = [(names[a], names[c]) for a, c in resolved if a == c]
    if same:
        raise InputError(f"{op}: pairs {same} subtract a channel from itself.")
    if len(set(resolved)) != len(resolved):
        dupes = sorted({(names[a], names[c]) for a, c in resolved if resolved.count((a, c)) > 1})
        raise InputError(f"{op}: pairs {dupes} are listed more than once.")
    return tuple(resolved)


def bipolar_montage(
    channel_names: Sequence[str] | None = None,
    pairs: PairsSpec = None,
    *,
    n_channels: int | None = None,
    op: str = "bipolar_montage",
) -> Montage:
    """Build the bipolar weight matrix (anode minus cathode per output; cached).

    Args:
        channel_names: Channel labels; default ``"0", "1", ...`` (with ``n_channels``).
        pairs: ``None``/``"sequential"``: (0, 1), (1, 2), ...; ``"shaft"``: contacts n and
            n+1 of the same shaft, from the labels (see :func:`parse_contact_label`); or
            explicit ``(anode, cathode)`` pairs of channel indices or names.
        n_channels: Number of channels when no names are given.
        op: Name used in error messages.

    Returns:
        A :class:`Montage`; output names are ``"<anode>-<cathode>"`` and output positions
        are the pair midpoints.

    Example:
        >>> bipolar_montage(["LA1", "LA2", "LB1", "LB2"], "shaft").names
        ('LA1-LA2', 'LB1-LB2')
    """
    if channel_names is None:
        if n_channels is None:
            raise InputError(f"{op}: give channel_names or n_channels.")
        names = default_names(int(n_channels))
    else:
        names = tuple(str(c) for c in channel_names)
        if n_channels is not None and n_channels != len(names):
            raise InputError(f"{op}: {len(names)} channel names for {n_channels} channels.")
    return _bipolar_cached(names, _resolve_pairs(names, pairs, op))


def bipolar_rereference(
    neural_data: torch.Tensor,
    pairs: PairsSpec = None,
    *,
    channel_names: Sequence[str] | None = None,
) -> torch.Tensor:
    """Bipolar re-reference: one output channel per (anode, cathode) pair, anode − cathode.

    Args:
        neural_data: Shape (batch, channels, time) or (channels, time).
        pairs: ``None`` (sequential (0, 1), (1, 2), ...), ``"shaft"`` (adjacent contacts of
            each shaft, needs ``channel_names``), or explicit pairs of indices or names.
        channel_names: Labels of the channels (for ``"shaft"`` and named pairs).

    Returns:
        Tensor (batch, pairs, time) or (pairs, time). Output names (``"LA1-LA2"``) and
        midpoint positions come from :func:`bipolar_montage`.

    Example:
        >>> data = torch.randn(4, 8, 1000)
        >>> bipolar_rereference(data).shape
        torch.Size([4, 7, 1000])
    """
    op = "bipolar_rereference"
    x, was_unbatched = batched(neural_data, op)
    montage = bipolar_montage(channel_names, pairs, n_channels=x.shape[1], op=op)
    return unbatched(montage.apply(x), was_unbatched)


class BipolarReference(Transform):
    """Bipolar re-reference: anode minus cathode for each pair of channels.

    Args:
        pairs: ``"sequential"`` (channel order: (0, 1), (1, 2), ...), ``"shaft"`` (contacts
            n and n+1 of each shaft, from the labels) or explicit ``(anode, cathode)`` pairs
            of channel names.

    Output channels are named ``"<anode>-<cathode>"``; positions become the pair midpoints;
    an output is masked where either contact is.

    Example:
        >>> BipolarReference(pairs="shaft")
        >>> BipolarReference(pairs=[("LA1", "LA2"), ("LB3", "LB4")])
    """

    op: ClassVar[str] = "bipolar"
    pairs: Literal["sequential", "shaft"] | tuple[tuple[str, str], ...] = "sequential"

    @pydantic.field_validator("pairs")
    @classmethod
    def _non_empty(cls, pairs: object) -> object:
        if isinstance(pairs, tuple):
            if not pairs:
                raise ValueError("give at least one (anode, cathode) pair of channel names")
            same = [p for p in pairs if p[0] == p[1]]
            if same:
                raise ValueError(f"pairs {same} subtract a channel from itself")
            if len(set(pairs)) != len(pairs):
                raise ValueError("a pair is listed more than once")
        return pairs

    def _montage(self, names: tuple[str, ...]) -> Montage:
        return bipolar_montage(names, self.pairs, op=self.op)

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        names = spec.channel_names
        if names is None:
            if isinstance(self.pairs, tuple):
                names_out: tuple[str, ...] | None = tuple(f"{a}-{c}" for a, c in self.pairs)
            elif self.pairs == "sequential" and spec.n_channels is not None:
                names_out = self._montage(default_names(spec.n_channels)).names
            else:
                return spec.replace(shape=(spec.shape[0], None, *spec.shape[2:]))
        else:
            names_out = self._montage(names).names
        return spec.replace(shape=(spec.shape[0], len(names_out), *spec.shape[2:]), channel_names=names_out)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        return self._montage(batch.channel_names).apply_to_batch(batch)
