"""Montages: channel-mixing weight matrices built once from channel metadata, by name.

A :class:`Montage` is a (channels_out, channels_in) weight matrix plus the output channel
names and how positions and masks follow. Re-referencing (Laplacian, bipolar) and fixed
spatial filters all reduce to one ``einsum`` with such a matrix, so no Python loop over
electrodes runs at apply time. Builders are cached on (names, positions, parameters); each
montage caches its weights per (device, dtype). Private to :mod:`neurocrane.preprocessing`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from neurocrane.batch import NeuralBatch
from neurocrane.errors import InputError

_LABEL_RE = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True, eq=False)
class Montage:
    """A linear map over the channel axis, resolved from channel metadata.

    Attributes:
        weights: (channels_out, channels_in) float64 CPU tensor; output = weights @ input.
        input_names: The channel names the columns refer to, in order.
        names: Output channel names, one per row.
        position_weights: (channels_out, channels_in) map from input to output positions
            (e.g. one-hot for a re-referenced electrode, 0.5/0.5 for a bipolar midpoint), or
            ``None`` when output channels have no meaningful position.

    Example:
        >>> m = bipolar_montage(["LA1", "LA2", "LA3"], pairs="shaft")
        >>> m.names
        ('LA1-LA2', 'LA2-LA3')
    """

    weights: torch.Tensor
    input_names: tuple[str, ...]
    names: tuple[str, ...]
    position_weights: torch.Tensor | None = None
    _on_device: dict = field(default_factory=dict, repr=False)

    @property
    def support(self) -> torch.Tensor:
        """(channels_out, channels_in) bool: which inputs each output uses."""
        return self.weights != 0

    def weights_for(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The weight matrix on ``device`` in ``dtype`` (converted once, then cached)."""
        key = (str(device), dtype)
        w = self._on_device.get(key)
        if w is None:
            w = self.weights.to(device=device, dtype=dtype)
            self._on_device[key] = w
        return w

    def _slots(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For a sparse matrix (each output uses few inputs): per output row, the indices of its
        K non-zero inputs and their weights, padded to (channels_out, K); ``None`` when dense."""
        key = ("slots", str(device), dtype)
        if key not in self._on_device:
            support = self.weights != 0
            k = int(support.sum(dim=1).max()) if support.numel() else 0
            slots = None
            if 0 < k and 4 * k <= self.weights.shape[1]:
                idx = torch.zeros(self.weights.shape[0], k, dtype=torch.long)
                w = torch.zeros(self.weights.shape[0], k, dtype=torch.float64)
                for row in range(self.weights.shape[0]):
                    cols = support[row].nonzero().flatten()
                    idx[row, : len(cols)] = cols
                    w[row, : len(cols)] = self.weights[row, cols]
                slots = (idx.to(device), w.to(device=device, dtype=dtype))
            self._on_device[key] = slots
        return self._on_device[key]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the channel axis (dim 1) of ``x`` (batch, channels, ...).

        Dense matrices (and anything that needs gradients) run as one einsum. Sparse ones (a
        Laplacian uses 2-3 inputs per output) gather K rows per output from each sample instead
        of multiplying by a mostly-zero (channels x channels) matrix: a few contiguous memory
        passes, with no Python loop over electrodes (only over the K slots and the batch).
        """
        if x.shape[1] != len(self.input_names):
            raise InputError(f"montage expects {len(self.input_names)} channels on axis 1; got shape {tuple(x.shape)}.")
        slots = self._slots(x.device, x.dtype)
        if slots is None or (x.requires_grad and torch.is_grad_enabled()):
            return torch.einsum("oc,bc...->bo...", self.weights_for(x.device, x.dtype), x)
        idx, w = slots
        wshape = (-1,) + (1,) * (x.ndim - 2)
        weights = [w[:, k].reshape(wshape) for k in range(idx.shape[1])]
        out = x.new_empty((x.shape[0], idx.shape[0], *x.shape[2:]))
        for b in range(x.shape[0]):
            xb, ob = x[b], out[b]
            torch.mul(xb[idx[:, 0]], weights[0], out=ob)
            for k in range(1, idx.shape[1]):
                ob.addcmul_(xb[idx[:, k]], weights[k])
        return out

    def output_positions(self, positions: torch.Tensor | None) -> torch.Tensor | None:
        """Positions (channels_out, 3) of the outputs, or ``None``."""
        if positions is None or self.position_weights is None:
            return None
        pw = self.position_weights.to(device=positions.device, dtype=positions.dtype)
        return pw @ positions

    def output_mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """An output channel is valid only where every input it uses is valid."""
        if mask is None:
            return None
        support = self.support.to(device=mask.device, dtype=torch.float32)
        bad_inputs = (~mask).to(torch.float32) @ support.T
        return bad_inputs == 0

    def apply_to_batch(self, batch: NeuralBatch) -> NeuralBatch:
        """Apply to a :class:`NeuralBatch`, resolving the input channels by name.

        Channels of the batch that the montage does not use are dropped; names, positions
        and the mask follow the output channels.
        """
        if batch.channel_names == self.input_names:
            x, pos, mask = batch.signals, batch.channel_positions, batch.channel_mask
        else:
            idx = batch.channel_index(self.input_names)
            index = torch.tensor(idx, device=batch.device)
            x = batch.signals.index_select(1, index)
            pos = None if batch.channel_positions is None else batch.channel_positions[idx]
            mask = None if batch.channel_mask is None else batch.channel_mask[:, idx]
        return batch.replace(
            signals=self.apply(x),
            channel_names=self.names,
            channel_positions=self.output_positions(pos),
            channel_mask=self.output_mask(mask),
        )


# -- labels ---------------------------------------------------------------------------------
def parse_label(label: str) -> tuple[str, int] | None:
    """Split an SEEG contact label into (shaft stem, contact number), or ``None`` if it has
    no trailing digits or no letter before them (``'O1aIb4'`` → ``('O1aIb', 4)``)."""
    m = _LABEL_RE.match(label)
    if m is None or not any(c.isalpha() for c in m.group(1)):
        return None
    return m.group(1), int(m.group(2))


def parse_labels(names: Sequence[str], op: str, param: str) -> list[tuple[str, int]]:
    """Parse every label or raise naming the op, the parameter and the offending labels."""
    parsed = [parse_label(n) for n in names]
    bad = [n for n, p in zip(names, parsed, strict=True) if p is None]
    if bad:
        raise InputError(
            f"{op}: {param} needs SEEG contact labels made of a shaft name and a contact number "
            f"(e.g. 'LA12', 'O1aIb4'); cannot parse {bad[:10]}{' ...' if len(bad) > 10 else ''}. "
            "Rename those channels, drop them first (select_channels), or use another mode."
        )
    seen: dict[tuple[str, int], str] = {}
    for name, key in zip(names, parsed, strict=True):
        if key in seen:
            raise InputError(
                f"{op}: labels {seen[key]!r} and {name!r} both mean contact {key[1]} of shaft "
                f"{key[0]!r}; contact labels must be unambiguous."
            )
        seen[key] = name
    return parsed  # type: ignore[return-value]


def label_neighbours(names: Sequence[str], op: str) -> list[list[int]]:
    """For each label, the indices of contacts number ±1 on the same shaft (those present)."""
    parsed = parse_labels(names, op, "channel_names")
    where = {key: i for i, key in enumerate(parsed)}
    out = []
    for stem, num in parsed:
        out.append([where[k] for k in ((stem, num - 1), (stem, num + 1)) if k in where])
    return out


# -- helpers for builders --------------------------------------------------------------------
def check_finite(value: float, name: str, op: str, positive: bool = True) -> float:
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        kind = "a positive finite" if positive else "a finite"
        raise InputError(f"{op}: {name} must be {kind} number; got {value}.")
    return value


def check_positions(positions: torch.Tensor | None, n_channels: int, op: str) -> torch.Tensor | None:
    """Positions as a float64 CPU (n_channels, 3) tensor, with a clear error on a bad shape."""
    if positions is None:
        return None
    pos = torch.as_tensor(positions)
    if pos.shape != (n_channels, 3):
        raise InputError(
            f"{op}: electrode_positions must have shape (channels, 3) = ({n_channels}, 3), one xyz "
            f"position in mm per channel; got {tuple(pos.shape)}."
        )
    return pos.detach().to("cpu", torch.float64)


def positions_key(positions: torch.Tensor | None) -> bytes | None:
    """A hashable, exact cache key for a positions tensor."""
    return None if positions is None else positions.contiguous().numpy().tobytes()


def positions_from_key(key: bytes | None) -> torch.Tensor | None:
    if key is None:
        return None
    return torch.frombuffer(bytearray(key), dtype=torch.float64).reshape(-1, 3)


def default_names(n_channels: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(n_channels))
