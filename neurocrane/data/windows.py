"""Cut a continuous :class:`~neurocrane.data.Recording` into windows: one sample dict per window.

Two ways to place windows:

* ``WindowDataset(recording, context_length, stride)`` — windows of ``context_length`` seconds
  every ``stride`` seconds (default: back to back), unlabelled (``labels = -1``).
* ``WindowDataset.around_events(recording, context_length, offset=...)`` — one window per event,
  starting ``offset`` seconds from its onset, labelled with the event's class.

Each sample is a dict (see :func:`~neurocrane.data.collate.collate_windows` for the batch):
``neural_data`` float32 (C, T) tensor (for float32 recordings a transposed view of a time-major
copy; call ``.contiguous()`` if you need (C, T) memory order), ``labels`` int, ``subject_id``, ``session_id``,
``channel_names``, ``channel_positions`` (C, 3) tensor or None, ``channel_mask`` (C,) bool tensor
(False for bad channels), ``sampling_rate``, ``start`` (first sample in the recording) and
``applied`` (fingerprints of pipeline parts already applied to the recording, so batches are
stamped and the model does not run them twice).

Signals are read from the recording's memory map when a window is requested, never up front.

Batched reads: a DataLoader with a batch sampler asks ``dataset.__getitems__(indices)`` for a
whole batch at once. :class:`WindowDataset` and :class:`ConcatWindowDataset` answer with a
:class:`WindowRequest` (a lazy sequence of the same sample dicts) that
:func:`~neurocrane.data.collate.collate_windows` turns into a batch with one plain copy per
window into a time-major ``(batch, time, channels)`` block and metadata built once per session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from neurocrane.data.recording import Recording
from neurocrane.errors import InputError

__all__ = ["ConcatWindowDataset", "WindowDataset", "WindowRequest", "label_mapping"]

logger = logging.getLogger("neurocrane.data")


def _window_samples(recording: Recording, context_length: float) -> int:
    try:
        seconds = float(context_length)
    except (TypeError, ValueError):
        raise InputError(f"context_length must be a number of seconds; got {context_length!r}.") from None
    n = int(round(seconds * recording.sampling_rate))
    if not np.isfinite(seconds) or n < 1:
        raise InputError(
            f"context_length must be a positive number of seconds giving at least one sample; got {context_length!r} "
            f"({seconds * recording.sampling_rate:.3g} samples at {recording.sampling_rate:g} Hz)."
        )
    if n > recording.n_times:
        raise InputError(
            f"recording {recording.subject_id}/{recording.session_id} is {recording.duration:.3f} s long "
            f"({recording.n_times} samples at {recording.sampling_rate:g} Hz); a window of {seconds:g} s "
            f"({n} samples) does not fit. Use a shorter context_length or leave this session out."
        )
    return n


def label_mapping(labels: Mapping[str, int] | Sequence[str]) -> dict[str, int]:
    """Normalize a label map: a list of class names becomes ``{name: position}``.

    Args:
        labels: ``{"rest": 0, "speech": 1}`` or ``["rest", "speech"]``.

    Returns:
        A dict from class name to a non-negative int.

    Example:
        >>> label_mapping(["rest", "speech"])
        {'rest': 0, 'speech': 1}
    """
    if isinstance(labels, Mapping):
        out = {str(k): int(v) for k, v in labels.items()}
    else:
        names = [str(x) for x in labels]
        if len(set(names)) != len(names):
            raise InputError(f"label names must be unique; got {names}.")
        out = {n: i for i, n in enumerate(names)}
    if not out or any(v < 0 for v in out.values()):
        raise InputError(f"a label map needs at least one class and non-negative class ids; got {out}.")
    return out


def _rest_starts(recording: Recording, window_samples: int, margin_s: float) -> list[int]:
    """Start samples of one window centred in each event-free stretch long enough for it."""
    rate = recording.sampling_rate
    margin = int(round(margin_s * rate))
    busy = sorted(
        (int(round(e.onset * rate)), int(round((e.onset + e.duration) * rate))) for e in recording.events
    )
    starts, free_from = [], 0
    for onset, end in [*busy, (recording.n_times + margin, recording.n_times + margin)]:
        lo, hi = free_from + margin, onset - margin  # usable stretch [lo, hi)
        if hi - lo >= window_samples:
            starts.append((lo + hi - window_samples) // 2)
        free_from = max(free_from, end)
    return starts


class WindowDataset(Dataset):
    """Fixed-length windows of one recording, as sample dicts.

    Args:
        recording: The continuous recording (memory-mapped or in memory).
        context_length: Window length in seconds.
        stride: Seconds between window starts (default: ``context_length``, no overlap).
        start: Seconds from which windows are placed (default 0).
        stop: Seconds at which the last window must end (default: the end of the recording).

    Raises:
        InputError: a window longer than the recording (or than ``[start, stop)``), a
            non-positive stride or context length.

    Example:
        >>> rec = Recording.from_array(np.random.randn(4, 5120), 512.0, ["A1", "A2", "A3", "A4"])
        >>> ds = WindowDataset(rec, context_length=2.0, stride=1.0)
        >>> len(ds), ds[0]["neural_data"].shape
        (9, torch.Size([4, 1024]))
    """

    def __init__(
        self,
        recording: Recording,
        context_length: float,
        stride: float | None = None,
        *,
        start: float = 0.0,
        stop: float | None = None,
    ):
        self.recording = recording
        self.window_samples = _window_samples(recording, context_length)
        self.context_length = float(context_length)
        rate = recording.sampling_rate
        step = self.window_samples if stride is None else int(round(float(stride) * rate))
        if step < 1:
            raise InputError(f"stride must be a positive number of seconds (>= one sample); got {stride!r}.")
        first = int(round(float(start) * rate))
        last = recording.n_times if stop is None else int(round(float(stop) * rate))
        if not 0 <= first < last <= recording.n_times:
            raise InputError(
                f"start={start} s and stop={stop} s must satisfy 0 <= start < stop <= {recording.duration:.3f} s "
                f"(the length of {recording.subject_id}/{recording.session_id})."
            )
        if last - first < self.window_samples:
            raise InputError(
                f"the span [{start}, {last / rate:g}) s of {recording.subject_id}/{recording.session_id} is shorter "
                f"than one window of {self.context_length:g} s; widen the span or shorten context_length."
            )
        self.starts = np.arange(first, last - self.window_samples + 1, step, dtype=np.int64)
        self.labels = np.full(len(self.starts), -1, dtype=np.int64)
        self.label_map: dict[str, int] = {}
        self.n_dropped_events = 0
        self._init_metadata()

    @classmethod
    def around_events(
        cls,
        recording: Recording,
        context_length: float,
        *,
        offset: float = 0.0,
        label_map: Mapping[str, int] | Sequence[str] | None = None,
        rest_label: str | None = None,
        rest_margin: float = 0.5,
    ) -> WindowDataset:
        """One labelled window per event (and, optionally, rest windows between events).

        Events whose window would reach outside the recording are dropped; how many is logged and
        kept in ``n_dropped_events`` (a documented, counted clean-up). Events whose label is not in
        ``label_map`` are left out (that is how to select classes).

        Args:
            recording: A recording with ``events``.
            context_length: Window length in seconds.
            offset: Window start relative to each event onset, in seconds (e.g. ``-0.5``).
            label_map: Class name → id, or a list of names (id = position). Default: the sorted
                labels of this recording's events. Give it explicitly when several recordings
                must share ids (:class:`~neurocrane.data.iEEGDataModule` does). Several names may
                share an id (``{"rest": 0, "stim_a": 1, "stim_b": 1}`` = event vs rest).
            rest_label: If given (it must be in ``label_map``), also add one window labelled
                ``rest_label`` in the middle of every event-free stretch that holds a window plus
                ``rest_margin`` seconds on each side (stretches run from recording start, between
                events of any label, to recording end), so a detector sees both classes.
            rest_margin: Seconds kept clear between a rest window and the nearest event.

        Returns:
            The dataset; ``labels`` holds each window's class id.

        Raises:
            InputError: no event gives a window inside the recording.

        Example:
            >>> ds = WindowDataset.around_events(rec, 1.0, offset=-0.2, label_map=["rest", "speech"])
            >>> ds[0]["labels"] in (0, 1)
            True
        """
        self = cls.__new__(cls)
        self.recording = recording
        self.window_samples = _window_samples(recording, context_length)
        self.context_length = float(context_length)
        events = list(recording.events)
        self.label_map = label_mapping(sorted({e.label for e in events})) if label_map is None else label_mapping(label_map)
        rate = recording.sampling_rate
        starts, labels, dropped = [], [], 0
        for ev in events:
            if ev.label not in self.label_map:
                continue
            s = int(round((ev.onset + float(offset)) * rate))
            if s < 0 or s + self.window_samples > recording.n_times:
                dropped += 1
                continue
            starts.append(s)
            labels.append(self.label_map[ev.label])
        if rest_label is not None:
            if rest_label not in self.label_map:
                raise InputError(
                    f"rest_label {rest_label!r} is not in the label map {self.label_map}; add it, e.g. "
                    f"label_map={{'{rest_label}': 0, ...}}."
                )
            rest = _rest_starts(recording, self.window_samples, rest_margin)
            starts += rest
            labels += [self.label_map[rest_label]] * len(rest)
            order = np.argsort(starts, kind="stable")
            starts, labels = [starts[i] for i in order], [labels[i] for i in order]
        self.n_dropped_events = dropped
        name = f"{recording.subject_id}/{recording.session_id}"
        if dropped:
            logger.warning(
                "%s: dropped %d event(s) whose %g s window (offset %g s) reaches outside the recording.",
                name, dropped, self.context_length, float(offset),
            )
        if not starts:
            raise InputError(
                f"{name}: no event gives a window inside the recording ({len(events)} event(s), "
                f"{dropped} outside, labels kept: {sorted(self.label_map)}). Check the events, offset and label_map."
            )
        self.starts = np.asarray(starts, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._init_metadata()
        return self

    def _init_metadata(self) -> None:
        rec = self.recording
        self.subject_id = rec.subject_id
        self.session_id = rec.session_id
        self.channel_names = tuple(rec.channel_names)
        self._positions_array = None if rec.channel_positions is None else np.array(rec.channel_positions, dtype=np.float32)
        self._good = ~np.asarray(rec.bad_channels, dtype=bool)
        self._positions = None if self._positions_array is None else torch.tensor(self._positions_array)
        self._mask = torch.as_tensor(self._good)
        self.applied = tuple(getattr(rec, "applied", ()) or ())
        self._bad = np.flatnonzero(np.asarray(rec.bad_channels, dtype=bool))
        # Non-finite values per window, learnt on first read (-1: not read yet). Recordings are
        # immutable, so later reads of a window skip the check; scaled int16 is always finite.
        scale = rec.scale
        known = rec.storage_dtype != "float32" and (scale is None or bool(np.isfinite(scale).all()))
        self._nonfinite = np.full(len(self.starts), 0 if known else -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.starts)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"window {index} out of range for a dataset of {n} windows.")
        start = int(self.starts[i])
        stop = start + self.window_samples
        if self.recording.storage_dtype == "float32":
            # One plain copy of the time-major block; the (C, T) view is transposed once, by
            # collate, straight into the batch (in shared memory inside DataLoader workers).
            data = torch.from_numpy(np.array(self.recording.read_raw(start, stop))).t()
        else:
            data = torch.from_numpy(self.recording.read(start, stop))  # int16: scaled on read
        return {
            "neural_data": data,
            "labels": int(self.labels[i]),
            "subject_id": self.subject_id,
            "session_id": self.session_id,
            "channel_names": self.channel_names,
            "channel_positions": self._positions,
            "channel_mask": self._mask,
            "sampling_rate": self.recording.sampling_rate,
            "start": start,
            "applied": self.applied,
        }

    def __getitems__(self, indices: Sequence[int]) -> WindowRequest:
        """A batch of windows at once (what a DataLoader with a batch sampler asks for).

        Args:
            indices: Window indices (negative ones count from the end).

        Returns:
            A :class:`WindowRequest`; nothing is read until it is collated (or indexed).

        Example:
            >>> batch = collate_windows(ds.__getitems__([0, 1, 2]))
        """
        return WindowRequest([self], np.zeros(len(indices), dtype=np.int64), _positions(indices, len(self)))

    def read_into(
        self,
        positions: Sequence[int] | np.ndarray,
        out: np.ndarray,
        rows: Sequence[int] | np.ndarray | None = None,
        columns: slice | np.ndarray | None = None,
        *,
        clean: bool = False,
    ) -> int:
        """Copy windows, time-major, into rows of a float32 ``(n, time, channels)`` array.

        One plain copy per window out of the memory map (int16 storage is scaled on the way).
        Each window's count of non-finite values is learnt the first time it is read, while the
        window is still in the CPU cache, and remembered (recordings do not change), so later
        epochs pay nothing for it.

        Args:
            positions: Window indices ``(n,)`` (non-negative, in range).
            out: Writable float32 array ``(batch, window_samples, C_out)``.
            rows: Row of ``out`` for each window (default: ``0 .. n-1``).
            columns: Where this recording's channels go in the last axis of ``out`` (default: all
                of it, in order).
            clean: Also do :class:`~neurocrane.data.BasicPreprocessor`'s clean-up on each window
                while it is in cache: non-finite values become 0 and the recording's bad channels
                are zeroed. (Done in a separate pass over a whole batch, it costs as much memory
                traffic as the copy itself.)

        Returns:
            The number of non-finite values (NaN, +-Inf) the windows held (all channels, bad ones
            included), whether or not ``clean`` replaced them.

        Example:
            >>> out = np.empty((2, ds.window_samples, len(ds.channel_names)), np.float32)
            >>> ds.read_into([0, 1], out)
            0
        """
        # A plain ndarray view of the memory map: slicing a np.memmap costs microseconds per window.
        positions = np.asarray(positions, dtype=np.int64)
        rows = range(len(positions)) if rows is None else np.asarray(rows, dtype=np.int64).tolist()
        return self._window_copier(out, columns, clean)(positions.tolist(), rows)

    def _window_copier(
        self, out: np.ndarray, columns: slice | np.ndarray | None, clean: bool
    ) -> Callable[[Sequence[int], Sequence[int]], int]:
        """``copy(positions, rows) -> non-finite count``: :meth:`read_into` with the set-up done once,
        so loader threads can copy pieces of one batch with little Python (GIL) per piece."""
        # A plain ndarray view of the memory map: slicing a np.memmap costs microseconds per window.
        storage = self.recording.read_raw(0, self.recording.n_times).view(np.ndarray)
        scale = self.recording.scale
        cols = slice(None) if columns is None else columns
        bad = None
        if clean and len(self._bad):
            bad = (self._bad if columns is None else np.arange(out.shape[2])[cols][self._bad])
        T = self.window_samples
        starts, counts = self.starts, self._nonfinite

        def copy(positions: Sequence[int], rows: Sequence[int]) -> int:
            total = 0
            for row, p in zip(rows, positions, strict=True):
                start = int(starts[p])
                block = storage[start:start + T]
                target = out[row]  # (T, C_out) view
                if scale is None:
                    target[:, cols] = block
                elif isinstance(cols, slice):
                    np.multiply(block, scale, out=target[:, cols], casting="unsafe")
                else:  # target[:, array] would be a copy, not a view to write into
                    target[:, cols] = block * scale
                n = int(counts[p])
                if n < 0:
                    # A sum of finite values is finite (barring overflow, which just takes the exact count).
                    n = 0 if np.isfinite(np.add.reduce(block, axis=None)) else int(block.size - np.isfinite(block).sum())
                    counts[p] = n
                total += n
                if clean:
                    if n:
                        window = target[:, cols] if isinstance(cols, slice) else target
                        np.nan_to_num(window, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
                    if bad is not None:
                        target[:, bad] = 0.0
            return total

        return copy

    def __repr__(self) -> str:
        kind = "event windows" if self.label_map else "windows"
        return (
            f"WindowDataset({self.subject_id}/{self.session_id}, {len(self)} {kind} of {self.context_length:g} s, "
            f"{len(self.channel_names)} channels)"
        )


def _positions(indices: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if not len(idx):
        return idx
    low, high = int(idx.min()), int(idx.max())
    if low >= 0 and high < n:  # the usual case: nothing to check or wrap
        return idx
    bad = (idx < -n) | (idx >= n)
    if bad.any():
        raise IndexError(f"window {int(idx[bad][0])} out of range for a dataset of {n} windows.")
    return np.where(idx < 0, idx + n, idx)


class WindowRequest(Sequence):
    """The windows of one batch, not read yet: what ``__getitems__`` returns.

    It is a sequence of the usual sample dicts (``request[i]`` reads window ``i``), so any
    ``collate_fn`` works on it; :func:`~neurocrane.data.collate.collate_windows` recognises it and
    builds the batch in one pass instead (one copy per window, metadata once per session).

    Args:
        datasets: The sessions involved.
        dataset_of: ``(n,)`` which of ``datasets`` each window comes from.
        positions: ``(n,)`` the window's index within its dataset.

    Attributes:
        run_parts: Set by a loader whose threads may share the work of one batch
            (:class:`~neurocrane.data.WindowDataLoader`): called with a list of functions, it runs
            them (on this thread and idle loader threads) and returns their results in order.
            ``None``: collate copies every window on the calling thread.
        n_parts: How many pieces the copy is worth splitting into (the loader's thread count).

    Example:
        >>> req = ds.__getitems__([3, 4])
        >>> len(req), req[0]["start"] == ds[3]["start"]
        (2, True)
    """

    def __init__(self, datasets: Sequence[WindowDataset], dataset_of: np.ndarray, positions: np.ndarray):
        self.datasets = list(datasets)
        self.dataset_of = np.asarray(dataset_of, dtype=np.int64)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.run_parts: Callable[[list[Callable[[], Any]]], list[Any]] | None = None
        self.n_parts = 1

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        return self.datasets[int(self.dataset_of[i])][int(self.positions[i])]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def groups(self) -> list[tuple[WindowDataset, np.ndarray]]:
        """``(dataset, rows)`` per session, in first-seen order; ``rows`` are batch positions."""
        order = list(dict.fromkeys(self.dataset_of.tolist()))
        return [(self.datasets[k], np.flatnonzero(self.dataset_of == k)) for k in order]

    def __repr__(self) -> str:
        return f"WindowRequest({len(self)} windows from {len(set(self.dataset_of.tolist()))} session(s))"


class ConcatWindowDataset(ConcatDataset):
    """``ConcatDataset`` of :class:`WindowDataset`\\ s that also serves whole batches.

    Indexing and ``datasets``/``cumulative_sizes`` are those of ``torch.utils.data.ConcatDataset``
    (the samplers rely on that layout); ``__getitems__`` returns one :class:`WindowRequest` for a
    batch that may span sessions.

    Example:
        >>> both = ConcatWindowDataset([WindowDataset(a, 1.0), WindowDataset(b, 1.0)])
        >>> collate_windows(both.__getitems__([0, len(both) - 1]))["session_id"]
        ['ses-01', 'ses-02']
    """

    def __getitems__(self, indices: Sequence[int]) -> WindowRequest:
        idx = _positions(indices, len(self))
        bounds = getattr(self, "_bounds", None)
        if bounds is None or len(bounds) != len(self.cumulative_sizes):
            self._bounds = bounds = np.asarray(self.cumulative_sizes, dtype=np.int64)
            self._offsets = np.concatenate([[0], bounds[:-1]])
        which = np.searchsorted(bounds, idx, side="right")
        return WindowRequest(self.datasets, which, idx - self._offsets[which])
