"""Continuous recordings: the :class:`Recording` type, its on-disk format and an index over a root.

On disk, one session is one folder::

    sub-01_ses-01/
      signals.npy      (n_times, n_channels) array, time-major, float32 (or int16 + scale)
      recording.json   sidecar: format tag + version, rate, channels, positions, bad flags,
                       subject/session ids, events, dtype, shape, optional scale, info
      .crane_cache/    recording-level preprocessing results (see recording_cache.py)

Time-major means the samples of all channels at one time point are adjacent, so a window across
all channels is one contiguous read from the memory map. Signals are never read eagerly:
:func:`open_recording` checks the sidecar against the array header and the file size, and the
memory map is opened on the first :meth:`Recording.read`.

Example:
    >>> rec = Recording.from_array(np.random.randn(4, 5120), 512.0, ["LA1", "LA2", "LA3", "LA4"])
    >>> folder = write_recording("/tmp/corpus/sub-01_ses-01", rec)
    >>> open_recording(folder).read_seconds(1.0, 2.0).shape
    (4, 1024)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurocrane.errors import InputDTypeError, InputError, NeuroCraneError

__all__ = [
    "Event",
    "Recording",
    "RecordingError",
    "RecordingNotFoundError",
    "RecordingIndex",
    "write_recording",
    "open_recording",
    "read_sidecar",
    "FORMAT",
    "FORMAT_VERSION",
    "SIDECAR_NAME",
    "SIGNALS_NAME",
]

FORMAT = "neurocrane.recording"
FORMAT_VERSION = 1
SIDECAR_NAME = "recording.json"
SIGNALS_NAME = "signals.npy"
_STORAGE_DTYPES = {"float32": np.float32, "int16": np.int16}
_INT16_MAX = 32767
_COPY_BYTES = 64 * 2**20  # rows are copied in blocks of about this size when writing


class RecordingError(NeuroCraneError, ValueError):
    """An on-disk recording is malformed: truncated signals, a sidecar that does not match the
    array, metadata of the wrong length. The message names the file."""


class RecordingNotFoundError(NeuroCraneError, FileNotFoundError):
    """A recording folder, its sidecar or its signals file does not exist."""


@dataclass(frozen=True)
class Event:
    """A labelled interval of a recording.

    Args:
        onset: Start in seconds from the first sample.
        duration: Length in seconds (0 for an instantaneous event).
        label: Class label, e.g. ``"speech"``.

    Example:
        >>> Event(onset=12.5, duration=1.0, label="speech")
    """

    onset: float
    duration: float
    label: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "onset", float(self.onset))
        object.__setattr__(self, "duration", float(self.duration))
        if not math.isfinite(self.onset) or not math.isfinite(self.duration) or self.duration < 0:
            raise InputError(
                f"Event: onset must be finite and duration finite and >= 0 (seconds); got "
                f"onset={self.onset}, duration={self.duration}."
            )
        if not isinstance(self.label, str) or not self.label:
            raise InputError(f"Event: label must be a non-empty string; got {self.label!r}.")

    @property
    def end(self) -> float:
        return self.onset + self.duration

    def to_dict(self) -> dict[str, Any]:
        return {"onset": self.onset, "duration": self.duration, "label": self.label}


class Recording:
    """A continuous recording: signals (channels, time) plus channel metadata and events.

    Build one with :meth:`from_array` (in memory) or :func:`open_recording` (memory-mapped
    from disk, read lazily). Instances are read-only.

    Attributes:
        path: Session folder on disk, or ``None`` for an in-memory recording.
        sampling_rate: Samples per second (Hz).
        channel_names: One unique label per channel.
        channel_positions: ``(C, 3)`` positions in mm (NaN where unknown), or ``None``.
        bad_channels: ``(C,)`` bool, ``True`` for channels flagged bad.
        subject_id, session_id: Identifiers.
        events: Labelled intervals, sorted by onset.
        applied: Fingerprints of pipeline parts already applied to these signals (set by
            :func:`~neurocrane.data.recording_cache.preprocess_recording`); windows cut from
            this recording carry them so the model's pipeline does not run them again.
        info: Free-form JSON metadata (units, line frequency, source file, ...).

    Example:
        >>> rec = Recording.from_array(np.zeros((2, 1000)), 500.0, ["A1", "A2"])
        >>> rec.duration, rec.read(0, 10).shape
        (2.0, (2, 10))
    """

    def __init__(
        self,
        *,
        sampling_rate: float,
        channel_names: Sequence[str],
        shape: tuple[int, int],
        storage_dtype: str = "float32",
        array: np.ndarray | None = None,
        data_file: Path | None = None,
        data_offset: int = 0,
        scale: np.ndarray | None = None,
        path: Path | None = None,
        channel_positions: Any = None,
        bad_channels: Any = None,
        subject_id: str = "sub-01",
        session_id: str = "ses-01",
        events: Sequence[Event] = (),
        applied: Sequence[str] = (),
        info: Mapping[str, Any] | None = None,
        error: type[Exception] = InputError,
    ):
        if (array is None) == (data_file is None):
            raise InputError("Recording needs exactly one of array= or data_file=; use from_array or open_recording.")
        where = f"recording {str(path)!r}" if path is not None else "Recording"
        self.path = None if path is None else Path(path)
        self.sampling_rate = _check_rate(sampling_rate, where, error)
        n_times, n_channels = (int(s) for s in shape)
        self._shape = (n_times, n_channels)
        self._storage_dtype = storage_dtype
        self._array = array
        self._data_file = data_file
        self._data_offset = int(data_offset)
        self._mmap: np.ndarray | None = None
        self.channel_names = _check_names(channel_names, n_channels, where, error)
        self.channel_positions = _check_positions(channel_positions, n_channels, where, error)
        self.bad_channels = _check_bad(bad_channels, n_channels, where, error)
        self._scale = _check_scale(scale, n_channels, storage_dtype, where, error)
        self.subject_id = _check_id(subject_id, "subject_id", where, error)
        self.session_id = _check_id(session_id, "session_id", where, error)
        self.events = _check_events(events, n_times / self.sampling_rate, where, error)
        self.applied = tuple(str(a) for a in applied)
        self.info = dict(info or {})

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_array(
        cls,
        signals: Any,
        sampling_rate: float,
        channel_names: Sequence[str] | None = None,
        *,
        channel_positions: Any = None,
        bad_channels: Any = None,
        subject_id: str = "sub-01",
        session_id: str = "ses-01",
        events: Sequence[Event | Mapping[str, Any]] = (),
        scale: float | Sequence[float] | None = None,
        applied: Sequence[str] = (),
        info: Mapping[str, Any] | None = None,
    ) -> Recording:
        """An in-memory recording from a ``(channels, time)`` array.

        Args:
            signals: ``(C, T)`` float array (numpy or torch); float64 is stored as float32.
                Integer data (int16) needs ``scale``: physical value = stored value * scale.
            sampling_rate: Hz.
            channel_names: One unique name per channel (default ``"0", "1", ...``).
            channel_positions: ``(C, 3)`` positions in mm; NaN where unknown.
            bad_channels: ``(C,)`` bools, or a list of bad channel names.
            subject_id, session_id: Identifiers (used for folder names and batching).
            events: :class:`Event` objects or ``{"onset", "duration", "label"}`` dicts; every
                event must lie inside the recording.
            scale: Scalar or per-channel factor for integer data.
            applied: Fingerprints of pipeline parts already applied to ``signals``.
            info: Free-form JSON-serializable metadata.

        Returns:
            The recording.

        Raises:
            InputDTypeError: integer signals without ``scale``, or a dtype that is not numeric.
            InputError: wrong shapes, duplicate names, events outside the recording.

        Example:
            >>> Recording.from_array(np.random.randn(3, 1024), 512.0, ["LA1", "LA2", "LA3"]).duration
            2.0
        """
        array = _as_numpy(signals)
        if array.ndim != 2:
            raise InputError(
                f"Recording.from_array: signals must be (channels, time); got shape {array.shape}. "
                "For one channel use signals[None, :]."
            )
        if array.shape[1] < 1:
            raise InputError("Recording.from_array: signals have no samples (time axis of length 0).")
        if np.issubdtype(array.dtype, np.integer):
            if scale is None:
                raise InputDTypeError(
                    f"Recording.from_array: integer signals ({array.dtype}) need scale= (physical value = "
                    "stored value * scale, e.g. the ADC gain in uV per bit); or convert to float first."
                )
            if array.dtype != np.int16:
                raise InputDTypeError(
                    f"Recording.from_array: integer signals must be int16; got {array.dtype}. Convert to "
                    "float32 (values times their gain) instead."
                )
            storage = "int16"
            stored = np.ascontiguousarray(array.T)
        elif np.issubdtype(array.dtype, np.floating):
            if scale is not None:
                raise InputError("Recording.from_array: scale= applies to int16 signals only; float signals are stored as given.")
            storage = "float32"
            stored = np.ascontiguousarray(array.T, dtype=np.float32)
        else:
            raise InputDTypeError(f"Recording.from_array: signals must be float or int16; got dtype {array.dtype}.")
        if channel_names is None:
            channel_names = [str(i) for i in range(array.shape[0])]
        return cls(
            sampling_rate=sampling_rate,
            channel_names=channel_names,
            shape=stored.shape,
            storage_dtype=storage,
            array=stored,
            scale=None if scale is None else np.broadcast_to(np.asarray(scale, dtype=np.float32), (array.shape[0],)),
            channel_positions=channel_positions,
            bad_channels=_bad_from_names(bad_channels, channel_names),
            subject_id=subject_id,
            session_id=session_id,
            events=[e if isinstance(e, Event) else Event(**e) for e in events],
            applied=applied,
            info=info,
        )

    # -- shape ----------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        return self._shape[1]

    @property
    def n_times(self) -> int:
        return self._shape[0]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_times / self.sampling_rate

    @property
    def name(self) -> str:
        """``"<subject_id>/<session_id>"``."""
        return f"{self.subject_id}/{self.session_id}"

    @property
    def storage_dtype(self) -> str:
        """``"float32"`` or ``"int16"`` (scaled to float32 on read)."""
        return self._storage_dtype

    @property
    def scale(self) -> np.ndarray | None:
        """Per-channel factor applied to int16 storage on read (``None`` for float32)."""
        return None if self._scale is None else self._scale.copy()

    @property
    def is_on_disk(self) -> bool:
        return self._data_file is not None

    # -- reading --------------------------------------------------------------------------
    def _storage(self) -> np.ndarray:
        if self._array is not None:
            return self._array
        if self._mmap is None:
            dtype = _STORAGE_DTYPES[self._storage_dtype]
            try:
                self._mmap = np.memmap(self._data_file, dtype=dtype, mode="r", offset=self._data_offset, shape=self._shape)
            except FileNotFoundError:
                raise RecordingNotFoundError(
                    f"signals file {str(self._data_file)!r} of {self.name} disappeared after it was opened."
                ) from None
        return self._mmap

    def read_raw(self, start: int, stop: int) -> np.ndarray:
        """Stored values ``(stop - start, C)``, time-major, in the storage dtype, unscaled.

        This is a view of the memory map (or of the in-memory array); do not keep it around
        longer than needed. Most callers want :meth:`read`.
        """
        start, stop = self._check_span(start, stop)
        return self._storage()[start:stop]

    def read(self, start: int, stop: int, channels: Sequence[int] | None = None) -> np.ndarray:
        """Samples ``start`` (inclusive) to ``stop`` (exclusive) as a new float32 ``(C, stop-start)``
        array.

        Args:
            start, stop: Sample indices, ``0 <= start < stop <= n_times``.
            channels: Positions of the channels to read (default: all, in order).

        Returns:
            float32 array ``(len(channels), stop - start)``; int16 storage is scaled.

        Raises:
            InputError: the span is outside the recording, or a channel index is out of range.

        Example:
            >>> rec.read(0, 512, channels=[0, 2]).shape
            (2, 512)
        """
        start, stop = self._check_span(start, stop)
        block = self._storage()[start:stop]
        scale = self._scale
        if channels is not None:
            idx = self._check_channels(channels)
            block = block[:, idx]
            scale = None if scale is None else scale[idx]
        out = np.array(block.T, dtype=np.float32, order="C", copy=True)
        if scale is not None:
            out *= scale[:, None]
        return out

    def read_seconds(self, start_s: float, duration_s: float, channels: Sequence[int] | None = None) -> np.ndarray:
        """Like :meth:`read`, with the start and length in seconds (rounded to samples).

        Example:
            >>> rec.read_seconds(1.0, 0.5).shape[1] == round(0.5 * rec.sampling_rate)
            True
        """
        start = int(round(float(start_s) * self.sampling_rate))
        n = int(round(float(duration_s) * self.sampling_rate))
        if n < 1:
            raise InputError(
                f"read_seconds: duration {duration_s} s is {duration_s * self.sampling_rate:.3g} samples at "
                f"{self.sampling_rate:g} Hz; it must be at least one sample."
            )
        return self.read(start, start + n, channels)

    def _check_span(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = _as_index(start, "start"), _as_index(stop, "stop")
        if not 0 <= start < stop <= self.n_times:
            want = stop - start
            longer = (
                f" The window ({want} samples, {want / self.sampling_rate:.3f} s) is longer than the recording."
                if want > self.n_times
                else ""
            )
            raise InputError(
                f"{self.name}: cannot read samples [{start}, {stop}); the recording has {self.n_times} samples "
                f"({self.duration:.3f} s at {self.sampling_rate:g} Hz), so 0 <= start < stop <= {self.n_times}.{longer}"
            )
        return start, stop

    def _check_channels(self, channels: Sequence[int]) -> np.ndarray:
        idx = np.asarray(channels)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise InputError(f"{self.name}: channels must be a 1-D sequence of channel positions (ints); got {channels!r}.")
        bad = idx[(idx < 0) | (idx >= self.n_channels)]
        if bad.size:
            raise InputError(
                f"{self.name}: channel positions {bad.tolist()} are out of range; the recording has "
                f"{self.n_channels} channels (0..{self.n_channels - 1}). Use channel_index(names) to look up by name."
            )
        return idx.astype(np.intp)

    def channel_index(self, names: Sequence[str]) -> list[int]:
        """Positions of the named channels.

        Raises:
            InputError: naming the channels that are not in this recording.
        """
        lookup = {n: i for i, n in enumerate(self.channel_names)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise InputError(f"{self.name}: channels {missing} are not in this recording ({self.n_channels} channels).")
        return [lookup[n] for n in names]

    # -- misc -----------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """The sidecar fields describing the signals (JSON types; no format/layout keys)."""
        pos = None
        if self.channel_positions is not None:
            pos = [[None if math.isnan(v) else float(v) for v in row] for row in self.channel_positions.tolist()]
        return {
            "sampling_rate": self.sampling_rate,
            "channel_names": list(self.channel_names),
            "channel_positions": pos,
            "bad_channels": [bool(b) for b in self.bad_channels],
            "subject_id": self.subject_id,
            "session_id": self.session_id,
            "events": [e.to_dict() for e in self.events],
            "applied": list(self.applied),
            "info": self.info,
        }

    def __getstate__(self) -> dict[str, Any]:
        # a memory map is reopened in the receiving process (DataLoader workers) instead of
        # being pickled as a full copy of the data
        state = self.__dict__.copy()
        state["_mmap"] = None
        return state

    def __len__(self) -> int:
        return self.n_times

    def __repr__(self) -> str:
        where = f", on disk at {str(self.path)!r}" if self.path is not None else ", in memory"
        applied = f", applied={list(self.applied)}" if self.applied else ""
        return (
            f"Recording({self.name}, {self.n_channels} channels, {self.duration:.3f} s at "
            f"{self.sampling_rate:g} Hz, {self._storage_dtype}{where}{applied})"
        )


# -- validation helpers -------------------------------------------------------------------
def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{what} must be an integer sample index; got {value!r}. Use read_seconds for times in seconds.")
    return int(value)


def _check_rate(rate: Any, where: str, error: type[Exception]) -> float:
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise error(f"{where}: sampling_rate must be a number of Hz; got {rate!r}.") from None
    if not math.isfinite(rate) or rate <= 0:
        raise error(f"{where}: sampling_rate must be a positive finite number of Hz; got {rate}.")
    return rate


def _check_names(names: Any, n: int, where: str, error: type[Exception]) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
        raise error(f"{where}: channel_names must be a list of strings; got {type(names).__name__}.")
    names = tuple(str(c) for c in names)
    if len(names) != n:
        raise error(
            f"{where}: {len(names)} channel names for {n} channels in the signals; give exactly one name per "
            "channel (a channel missing from the metadata cannot be guessed)."
        )
    if any(not c for c in names):
        raise error(f"{where}: channel names must be non-empty strings.")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dupes = sorted({c for c in names if c in seen or seen.add(c)})
        raise error(f"{where}: channel names must be unique; repeated: {dupes}.")
    return names


def _check_positions(pos: Any, n: int, where: str, error: type[Exception]) -> np.ndarray | None:
    if pos is None:
        return None
    arr = np.array(
        [[np.nan if v is None else v for v in row] for row in pos] if isinstance(pos, list) else _as_numpy(pos),
        dtype=np.float64,
    )
    if arr.shape != (n, 3):
        raise error(f"{where}: channel_positions must have shape ({n}, 3) (xyz in mm per channel); got {arr.shape}.")
    if np.isinf(arr).any():
        raise error(f"{where}: channel_positions contain infinite values; use NaN for unknown positions.")
    arr.setflags(write=False)
    return arr


def _check_bad(bad: Any, n: int, where: str, error: type[Exception]) -> np.ndarray:
    arr = np.zeros(n, dtype=bool) if bad is None else np.asarray(_as_numpy(bad))
    if arr.shape != (n,) or not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
        raise error(f"{where}: bad_channels must be {n} booleans (one per channel); got {arr.dtype} of shape {arr.shape}.")
    arr = arr.astype(bool)
    arr.setflags(write=False)
    return arr


def _bad_from_names(bad: Any, names: Sequence[str]) -> Any:
    """Accept a list of bad channel names as well as a boolean vector."""
    if isinstance(bad, Sequence) and not isinstance(bad, str) and len(bad) == 0:
        return None
    if isinstance(bad, Sequence) and not isinstance(bad, str) and all(isinstance(b, str) for b in bad):
        unknown = sorted(set(bad) - set(names))
        if unknown:
            raise InputError(f"bad_channels names {unknown} that are not channels of the recording.")
        return np.array([c in set(bad) for c in names])
    return bad


def _check_scale(scale: Any, n: int, storage: str, where: str, error: type[Exception]) -> np.ndarray | None:
    if storage not in _STORAGE_DTYPES:
        raise error(f"{where}: storage dtype must be one of {sorted(_STORAGE_DTYPES)}; got {storage!r}.")
    if storage == "float32":
        if scale is not None:
            raise error(f"{where}: a scale is only used with int16 storage; float32 data has none.")
        return None
    if scale is None:
        raise error(f"{where}: int16 storage needs a scale (physical value = stored value * scale).")
    arr = np.array(np.broadcast_to(np.asarray(scale, dtype=np.float32), (n,)))
    if not np.isfinite(arr).all() or (arr <= 0).any():
        raise error(f"{where}: scale must be positive and finite for every channel; got {arr.tolist()[:8]}.")
    arr.setflags(write=False)
    return arr


def _check_id(value: Any, what: str, where: str, error: type[Exception]) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\") or value.strip() != value:
        raise error(f"{where}: {what} must be a non-empty string without slashes or surrounding spaces; got {value!r}.")
    return value


def _check_events(events: Sequence[Event], duration: float, where: str, error: type[Exception]) -> tuple[Event, ...]:
    events = tuple(events)
    for e in events:
        if not isinstance(e, Event):
            raise error(f"{where}: events must be Event objects; got {type(e).__name__}.")
    tol = 1e-6 * max(1.0, duration)
    outside = [e for e in events if e.onset < -tol or e.end > duration + tol]
    if outside:
        shown = ", ".join(f"{e.label}@{e.onset:g}s+{e.duration:g}s" for e in outside[:5])
        raise error(
            f"{where}: {len(outside)} event(s) lie outside the recording (0 to {duration:g} s): {shown}"
            f"{' ...' if len(outside) > 5 else ''}. Drop or crop them before building the recording."
        )
    return tuple(sorted(events, key=lambda e: (e.onset, e.duration, e.label)))


# -- writing ------------------------------------------------------------------------------
def write_recording(
    path: str | Path,
    recording: Recording | Any,
    *,
    dtype: str = "float32",
    overwrite: bool = False,
    **metadata: Any,
) -> Path:
    """Write a recording as one session folder (``signals.npy`` + ``recording.json``), atomically.

    The folder is assembled under a temporary name beside ``path`` and renamed into place, so a
    crash never leaves a half-written session. Signals are copied in blocks, so an on-disk
    recording is converted without loading it whole.

    Args:
        path: Session folder to create (its parents are created).
        recording: A :class:`Recording`, or a ``(channels, time)`` array plus the
            :meth:`Recording.from_array` keywords in ``metadata`` (``sampling_rate`` required).
        dtype: ``"float32"`` or ``"int16"``. int16 halves the size: float data is quantized with
            a per-channel scale (max |value| / 32767); int16 recordings are copied as stored.
        overwrite: Replace an existing session folder (only one holding a ``recording.json``).
        **metadata: For a Recording: fields to override (``subject_id``, ``events``, ...).

    Returns:
        The session folder.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        InputError: NaN/Inf values cannot be stored as int16.

    Example:
        >>> write_recording("corpus/sub-01/ses-01", np.random.randn(8, 5120), sampling_rate=512.0)
    """
    path = Path(path)
    if dtype not in _STORAGE_DTYPES:
        raise InputError(f"write_recording: dtype must be one of {sorted(_STORAGE_DTYPES)}; got {dtype!r}.")
    if not isinstance(recording, Recording):
        if "sampling_rate" not in metadata:
            raise InputError("write_recording: writing an array needs sampling_rate=... (and usually channel_names=...).")
        recording = Recording.from_array(recording, **metadata)
        metadata = {}
    meta = recording.metadata()
    unknown = sorted(set(metadata) - set(meta))
    if unknown:
        raise InputError(f"write_recording: unknown metadata {unknown}; known fields are {sorted(meta)}.")
    if "events" in metadata:
        metadata["events"] = [e.to_dict() if isinstance(e, Event) else dict(e) for e in metadata["events"]]
    meta.update(metadata)
    return _write_session(
        path,
        (recording.n_times, recording.n_channels),
        meta,
        lambda out: _write_signals(out, recording, dtype),
        dtype=dtype,
        overwrite=overwrite,
    )


def _write_session(
    path: Path,
    shape: tuple[int, int],
    meta: dict[str, Any] | Callable[[], dict[str, Any]],
    fill: Callable[[np.ndarray], np.ndarray | None],
    *,
    dtype: str = "float32",
    overwrite: bool = False,
) -> Path:
    """Assemble a session folder under a temporary name and rename it into place.

    ``fill(out)`` writes the signals into ``out``, a writable ``(n_times, n_channels)`` memory
    map of ``dtype``, and returns the int16 scale (or ``None``). ``meta`` holds the
    :meth:`Recording.metadata` fields, or is a function returning them once ``fill`` ran; it is
    validated before the sidecar is written.
    """

    def checked(meta: dict[str, Any]) -> dict[str, Any]:
        # validated and normalized to JSON types (numpy bools, tuples, ...) by a metadata-only Recording
        return Recording(shape=shape, array=np.empty((0, 0), np.float32), **_meta_kwargs(meta)).metadata()

    _check_target(path, overwrite)
    if not callable(meta):
        meta = checked(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        file = tmp / SIGNALS_NAME
        out = np.lib.format.open_memmap(file, mode="w+", dtype=_STORAGE_DTYPES[dtype], shape=shape)
        scale = fill(out)
        out.flush()
        del out
        if callable(meta):
            meta = checked(meta())
        with open(file, "rb+") as fh:
            os.fsync(fh.fileno())
        sidecar = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "data_file": SIGNALS_NAME,
            "layout": "time_major",
            "dtype": dtype,
            "shape": list(shape),
            "scale": None if scale is None else [float(s) for s in scale],
            **meta,
        }
        from neurocrane.pipeline.io import atomic_write_text

        atomic_write_text(tmp / SIDECAR_NAME, json.dumps(sidecar, indent=1, allow_nan=False) + "\n")
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _check_target(path: Path, overwrite: bool) -> None:
    if not path.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace the recording there.")
    if not path.is_dir() or (any(path.iterdir()) and not (path / SIDECAR_NAME).is_file()):
        raise FileExistsError(
            f"{str(path)!r} exists and is not a recording folder (no {SIDECAR_NAME}); refusing to replace it. "
            "Choose another path."
        )


def _swap_into_place(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _row_blocks(recording: Recording) -> Iterator[tuple[int, int]]:
    rows = max(1, _COPY_BYTES // (4 * recording.n_channels))
    for start in range(0, recording.n_times, rows):
        yield start, min(start + rows, recording.n_times)


def _write_signals(out: np.ndarray, recording: Recording, dtype: str) -> np.ndarray | None:
    """Copy the signals into ``out`` (time-major, storage dtype); return the int16 scale, if any."""
    scale = None
    if dtype == "int16" and recording.storage_dtype == "int16":
        scale = recording.scale
        for a, b in _row_blocks(recording):
            out[a:b] = recording.read_raw(a, b)
    elif dtype == "int16":
        peak = np.zeros(recording.n_channels, dtype=np.float64)
        for a, b in _row_blocks(recording):
            block = recording.read(a, b)
            if not np.isfinite(block).all():
                raise InputError(
                    f"write_recording: {recording.name} has NaN/Inf values, which int16 cannot store; "
                    "write dtype='float32' (NaN marks missing data) or clean the signals first."
                )
            np.maximum(peak, np.abs(block).max(axis=1), out=peak)
        scale = np.where(peak > 0, peak / _INT16_MAX, 1.0).astype(np.float32)
        for a, b in _row_blocks(recording):
            out[a:b] = np.rint(recording.read(a, b) / scale[:, None]).T.astype(np.int16)
    else:
        for a, b in _row_blocks(recording):
            out[a:b] = recording.read(a, b).T
    return scale


# -- reading ------------------------------------------------------------------------------
_REQUIRED_KEYS = ("format", "version", "data_file", "dtype", "shape", "sampling_rate", "channel_names")


def _meta_kwargs(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "sampling_rate": meta["sampling_rate"],
        "channel_names": meta["channel_names"],
        "channel_positions": meta.get("channel_positions"),
        "bad_channels": meta.get("bad_channels"),
        "subject_id": meta.get("subject_id", "sub-01"),
        "session_id": meta.get("session_id", "ses-01"),
        "events": [Event(**e) for e in meta.get("events", [])],
        "applied": meta.get("applied", []),
        "info": meta.get("info") or {},
    }


def read_sidecar(folder: str | Path) -> dict[str, Any]:
    """Parse a session folder's ``recording.json`` and check its format tag and version.

    Raises:
        RecordingNotFoundError: the folder or sidecar does not exist.
        RecordingError: the sidecar is not valid JSON, has another format or misses keys.
    """
    folder = Path(folder)
    if folder.name == SIDECAR_NAME and folder.is_file():
        folder = folder.parent
    file = folder / SIDECAR_NAME
    if not folder.is_dir():
        raise RecordingNotFoundError(f"recording folder {str(folder)!r} does not exist.")
    if not file.is_file():
        raise RecordingNotFoundError(
            f"{str(file)!r} does not exist: {str(folder)!r} is not a recording folder. Write recordings with "
            "neurocrane.data.write_recording (or convert files with neurocrane.data.readers)."
        )
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordingError(f"{str(file)!r} is not valid JSON ({err}); the sidecar is damaged.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise RecordingError(f"{str(file)!r} is not a neurocrane recording sidecar (format {got!r}, expected {FORMAT!r}).")
    if meta.get("version") != FORMAT_VERSION:
        raise RecordingError(
            f"{str(file)!r} has format version {meta.get('version')!r}; this neurocrane reads version "
            f"{FORMAT_VERSION}. Upgrade neurocrane or rewrite the recording."
        )
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise RecordingError(f"{str(file)!r} misses required keys {missing}.")
    return meta


def _npy_header(file: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    with open(file, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        except ValueError as err:
            raise RecordingError(f"{str(file)!r} is not a valid .npy file ({err}).") from None
        return shape, dtype, fortran, fh.tell()


def open_recording(path: str | Path) -> Recording:
    """Open a session folder written by :func:`write_recording`, without reading the signals.

    The sidecar is checked against the signals file: shape, dtype, byte size (a truncated file
    fails here, not in the middle of training), one name per channel, position and bad-flag
    lengths, events inside the recording.

    Args:
        path: The session folder (or its ``recording.json``).

    Returns:
        A memory-mapped :class:`Recording`.

    Raises:
        RecordingNotFoundError: a missing folder, sidecar or signals file.
        RecordingError: a truncated or mismatched file; the message names it.

    Example:
        >>> rec = open_recording("corpus/sub-01/ses-01")
        >>> rec.read(0, 512).dtype
        dtype('float32')
    """
    folder = Path(path)
    if folder.name == SIDECAR_NAME:
        folder = folder.parent
    meta = read_sidecar(folder)
    sidecar = folder / SIDECAR_NAME
    data_file = folder / str(meta["data_file"])
    if data_file.parent != folder:
        raise RecordingError(f"{str(sidecar)!r}: data_file must be a file name inside the folder; got {meta['data_file']!r}.")
    if not data_file.is_file():
        raise RecordingNotFoundError(f"signals file {str(data_file)!r} named by {str(sidecar)!r} does not exist.")
    dtype = meta["dtype"]
    if dtype not in _STORAGE_DTYPES:
        raise RecordingError(f"{str(sidecar)!r}: dtype must be one of {sorted(_STORAGE_DTYPES)}; got {dtype!r}.")
    shape = meta["shape"]
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s > 0 for s in shape)):
        raise RecordingError(f"{str(sidecar)!r}: shape must be [n_times, n_channels] (positive ints); got {shape!r}.")
    if meta.get("layout", "time_major") != "time_major":
        raise RecordingError(f"{str(sidecar)!r}: layout {meta.get('layout')!r} is not supported (only 'time_major').")
    itemsize = np.dtype(_STORAGE_DTYPES[dtype]).itemsize
    if data_file.suffix == ".npy":
        file_shape, file_dtype, fortran, offset = _npy_header(data_file)
        if list(file_shape) != shape or file_dtype != np.dtype(_STORAGE_DTYPES[dtype]) or fortran:
            raise RecordingError(
                f"{str(data_file)!r} holds a {file_dtype} array of shape {tuple(file_shape)}"
                f"{' (Fortran order)' if fortran else ''}, but {str(sidecar)!r} describes {dtype} {tuple(shape)} "
                "(n_times, n_channels), time-major. The files do not belong together; rewrite the recording."
            )
    else:
        offset = 0  # raw little-endian .dat, no header
    expected = offset + shape[0] * shape[1] * itemsize
    size = data_file.stat().st_size
    if size != expected:
        raise RecordingError(
            f"{str(data_file)!r} has {size} bytes but {tuple(shape)} {dtype} samples need {expected}; "
            f"the file is {'truncated' if size < expected else 'longer than described'}. Rewrite the recording."
        )
    try:
        return Recording(
            shape=(shape[0], shape[1]),
            storage_dtype=dtype,
            data_file=data_file,
            data_offset=offset,
            scale=meta.get("scale"),
            path=folder,
            error=RecordingError,
            **_meta_kwargs(meta),
        )
    except (TypeError, KeyError, InputError) as err:
        raise RecordingError(f"{str(sidecar)!r}: invalid metadata: {err}") from None


# -- index over a root folder ---------------------------------------------------------------
class RecordingIndex:
    """The sessions stored under a root folder (any depth; hidden folders such as caches are skipped).

    Args:
        root: Folder to scan for ``recording.json`` sidecars.

    Attributes:
        root: The folder.
        sessions: ``[(subject_id, session_id, folder), ...]`` sorted by subject then session.

    Raises:
        RecordingNotFoundError: ``root`` does not exist or holds no recording.
        RecordingError: two folders claim the same subject and session.

    Example:
        >>> index = RecordingIndex("corpus")
        >>> len(index), index.subjects
        (6, ('sub-01', 'sub-02', 'sub-03'))
        >>> rec = index.open("sub-01", "ses-02")
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise RecordingNotFoundError(f"recording root {str(self.root)!r} does not exist or is not a folder.")
        found: dict[tuple[str, str], Path] = {}
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if SIDECAR_NAME not in files:
                continue
            meta = read_sidecar(folder)
            key = (str(meta.get("subject_id", "sub-01")), str(meta.get("session_id", "ses-01")))
            if key in found:
                raise RecordingError(
                    f"two recordings claim subject {key[0]!r} session {key[1]!r}: {str(found[key])!r} and "
                    f"{folder!r}. Give each session a unique (subject_id, session_id)."
                )
            found[key] = Path(folder)
            dirs[:] = []  # a session folder holds no nested sessions
        if not found:
            raise RecordingNotFoundError(
                f"no recordings under {str(self.root)!r} (no {SIDECAR_NAME} found). Write some with "
                "write_recording, make_synthetic_corpus or the readers."
            )
        self.sessions: list[tuple[str, str, Path]] = [(s, e, p) for (s, e), p in sorted(found.items())]

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(sorted({s for s, _, _ in self.sessions}))

    def path(self, subject_id: str, session_id: str) -> Path:
        """Folder of one session."""
        for s, e, p in self.sessions:
            if (s, e) == (subject_id, session_id):
                return p
        known = ", ".join(f"{s}/{e}" for s, e, _ in self.sessions[:10])
        raise RecordingNotFoundError(
            f"no session {subject_id}/{session_id} under {str(self.root)!r}; known: {known}"
            f"{' ...' if len(self.sessions) > 10 else ''}."
        )

    def open(self, subject_id: str, session_id: str) -> Recording:
        """Open one session (memory-mapped)."""
        return open_recording(self.path(subject_id, session_id))

    def __len__(self) -> int:
        return len(self.sessions)

    def __iter__(self) -> Iterator[Recording]:
        return (open_recording(p) for _, _, p in self.sessions)

    def __getitem__(self, i: int) -> Recording:
        return open_recording(self.sessions[i][2])

    def __repr__(self) -> str:
        return f"RecordingIndex({str(self.root)!r}, {len(self)} sessions, {len(self.subjects)} subjects)"
