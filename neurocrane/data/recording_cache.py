"""Recording-level preprocessing: run a model's recording part once per recording, cache it on disk.

Filters with long impulse responses (a 0.5 Hz high-pass, a Q=30 notch, a resampler) distort
the edges of short windows, so published SEEG pipelines filter the continuous recording and
cut windows afterwards (DESIGN.md §7). :func:`preprocess_recording` does that with a model's
own pipeline::

    recording_part, window_part = pipeline.split()

runs ``recording_part`` over the whole recording, and returns a :class:`Recording` of the result
whose ``applied`` names the part's fingerprint. Windows cut from it carry that fingerprint, so
``model.preprocess`` (the whole pipeline) resumes after the recording part and runs only the
window part.

Cache. For a recording on disk the result is written next to the data, in
``<session>/.crane_cache/<fingerprint>/`` (a normal session folder, written atomically), and
reused while the source is unchanged: the cache entry records the source's sidecar hash and
signals-file size and modification time. A changed pipeline has another fingerprint, hence
another entry: a cache hit is never stale. ``cache_dir=`` puts entries elsewhere (e.g. when
the data folder is read-only); in-memory recordings are processed without a cache unless
``cache_dir`` is given (they are then keyed by a hash of their content).

Memory. The recording is processed in time chunks of ``chunk_s`` seconds (all channels, since
re-referencing mixes channels), each read with ``pad_s`` seconds of real signal on both sides
that are dropped after processing. For FIR filters and pointwise ops (re-referencing) this is
exact once the pad covers the kernel; for IIR zero-phase filters it matches whole-recording
filtering up to the impulse-response tail left outside the pad. The default pad is ten times
the settling time the steps report (:meth:`Transform.min_duration`, summed), at least 10 s.
Resampling steps are supported when the rate ratio is a fraction with a small denominator
(chunk edges are placed where input and output samples line up). A recording no longer than
one chunk plus its pads is processed in one piece. Peak memory is a few copies of one padded
chunk: a 1-hour 128-channel 2 kHz recording (1.9 GB float32) with ``chunk_s=120`` needs about
0.15 GB per copy, and its result streams into a memory-mapped file.

Missing data. NaN/Inf samples would spread through any filter. Before the recording part runs
they are replaced by linear interpolation along time (0 for a channel with no finite sample in
the chunk); afterwards the output is set back to NaN at every time where a good channel was
non-finite (all output channels, since re-referencing mixes them), and per channel where the
channel names and rate are unchanged. Channels with no finite sample at all are flagged bad.
The counts are returned in ``info["recording_preprocessing"]["cleanup"]`` and reported by a
warning. Filter transients next to a gap are not removed.

Example:
    >>> pipeline = Pipeline([Highpass(cutoff=0.5), Notch(freqs=(60.0, 120.0)), ZScore()])
    >>> rec = preprocess_recording(open_recording("corpus/sub-01/ses-01"), pipeline)
    >>> rec.applied == (pipeline.split()[0].fingerprint,)
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurocrane.batch import TIME_AXES, NeuralBatch, SignalSpec
from neurocrane.data.recording import (
    SIDECAR_NAME,
    Event,
    Recording,
    RecordingError,
    RecordingNotFoundError,
    _write_session,
    open_recording,
)
from neurocrane.errors import InputError, PipelineError
from neurocrane.pipeline.pipeline import Pipeline
from neurocrane.pipeline.transform import Transform

__all__ = [
    "preprocess_recording",
    "preprocess_recordings",
    "recording_cache_path",
    "clear_recording_cache",
    "CACHE_FOLDER",
]

#: Name of the cache folder inside a session folder (hidden: RecordingIndex skips it).
CACHE_FOLDER = ".crane_cache"
_INFO_KEY = "recording_preprocessing"
_MAX_RATE_DENOMINATOR = 10_000
# Default chunk pad: the steps' settling times (min_duration, a 1e-3 energy tail) understate
# how far an IIR zero-phase filter reaches; with 10x (at least 10 s) the interior of chunked
# output matched whole-recording output to ~1e-6 of the signal's std on the synthetic corpus
# (0.5 Hz high-pass + 60 Hz notches), see tests/test_recording_cache.py.
_PAD_FACTOR = 10.0
_MIN_PAD_S = 10.0


def _source_stamp(recording: Recording) -> dict[str, Any]:
    """What identifies the source data: file identity for on-disk recordings, a content hash
    for in-memory ones."""
    if recording.path is not None and recording.is_on_disk:
        sidecar = recording.path / SIDECAR_NAME
        signals = recording._data_file
        stat = signals.stat()
        return {
            "sidecar_sha256": hashlib.sha256(sidecar.read_bytes()).hexdigest(),
            "signals_size": stat.st_size,
            "signals_mtime_ns": stat.st_mtime_ns,
        }
    digest = hashlib.sha256(json.dumps(recording.metadata(), sort_keys=True).encode())
    digest.update(np.ascontiguousarray(recording._storage()).tobytes())
    if recording.scale is not None:
        digest.update(recording.scale.tobytes())
    return {"content_sha256": digest.hexdigest()}


def recording_cache_path(
    recording: Recording,
    pipeline: Pipeline,
    *,
    split_at: int | str | None = None,
    cache_dir: str | Path | None = None,
) -> Path | None:
    """Where :func:`preprocess_recording` keeps the result for this recording and pipeline.

    Returns:
        The cache entry folder, or ``None`` when the pipeline has no recording part or the
        recording is in memory and no ``cache_dir`` is given.

    Example:
        >>> recording_cache_path(rec, pipeline)
        PosixPath('corpus/sub-01/ses-01/.crane_cache/3f9a0c2d1e4b5a67')
    """
    part, _ = pipeline.split(split_at)
    if part is None:
        return None
    return _entry_path(recording, part.fingerprint, cache_dir)


def _entry_path(recording: Recording, fingerprint: str, cache_dir: str | Path | None) -> Path | None:
    if cache_dir is None:
        if recording.path is None:
            return None
        return recording.path / CACHE_FOLDER / fingerprint
    if recording.path is not None:
        source = str(recording.path.resolve())
    else:
        source = _source_stamp(recording)["content_sha256"]
    key = hashlib.sha256(source.encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{recording.subject_id}_{recording.session_id}-{key}" / fingerprint


def preprocess_recording(
    recording: Recording,
    pipeline: Pipeline,
    *,
    split_at: int | str | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    chunk_s: float = 120.0,
    pad_s: float | None = None,
    device: str | torch.device = "cpu",
) -> Recording:
    """Apply the recording part of ``pipeline`` to a whole recording (cached on disk).

    Args:
        recording: The raw recording.
        pipeline: The model's whole pipeline; only ``pipeline.split(split_at)[0]`` runs here.
        split_at: Where the window part starts (see :meth:`Pipeline.split`); default: after
            the last step that wants continuous input.
        cache: Reuse / write the on-disk cache. ``False`` always recomputes, in memory.
        cache_dir: Folder for cache entries instead of the session folder.
        chunk_s: Seconds of signal processed at a time (memory bound; see the module doc).
        pad_s: Seconds of real signal added on each side of a chunk; default from the steps'
            settling times.
        device: Where the steps run (e.g. ``"cuda"``); the result is stored on the CPU/disk.

    Returns:
        A :class:`Recording` of the processed signals with the output's rate, channel names,
        positions and bad flags, the same events and ids, and ``applied`` extended by the
        recording part's fingerprint. Memory-mapped from the cache entry when cached. The
        recording itself when the pipeline has no recording part.

    Raises:
        PipelineError: the recording part does not output time-domain data, or the recording
            was already processed by a different recording part.
        SpecError: the recording does not fit the steps (e.g. a cutoff above Nyquist).

    Example:
        >>> rec = preprocess_recording(recording, model.preprocess_pipeline)
        >>> rec.applied
        ('3f9a0c2d1e4b5a67',)
    """
    part, _ = pipeline.split(split_at)
    if part is None:
        return recording
    fingerprint = part.fingerprint
    if fingerprint in recording.applied:
        return recording
    if recording.applied:
        raise PipelineError(
            f"{recording.name} was already preprocessed by pipeline part(s) {list(recording.applied)}, not by this "
            f"pipeline's recording part ({fingerprint}); running it on top would filter twice. Pass the raw "
            "recording (open the session folder, not its cache)."
        )
    if not math.isfinite(chunk_s) or chunk_s <= 0:
        raise InputError(f"preprocess_recording: chunk_s must be a positive number of seconds; got {chunk_s}.")
    if pad_s is not None and (not math.isfinite(pad_s) or pad_s < 0):
        raise InputError(f"preprocess_recording: pad_s must be >= 0 seconds; got {pad_s}.")
    part = Pipeline(list(part.steps), training=False)
    in_spec = SignalSpec(
        shape=(1, recording.n_channels, recording.n_times),
        sampling_rate=recording.sampling_rate,
        channel_names=recording.channel_names,
        has_positions=recording.channel_positions is not None,
    )
    out_spec = part.validate(in_spec)
    if out_spec.axes != TIME_AXES or out_spec.sampling_rate is None:
        raise PipelineError(
            f"the recording part of this pipeline outputs {out_spec}; it must output time-domain data "
            f"{TIME_AXES} with a known sampling rate. Split before spectral steps (split(at=...))."
        )
    entry = _entry_path(recording, fingerprint, cache_dir) if cache else None
    stamp = _source_stamp(recording) if entry is not None else None
    if entry is not None:
        hit = _open_entry(entry, fingerprint, stamp)
        if hit is not None:
            return hit
    settle = pad_s if pad_s is not None else max(_MIN_PAD_S, _PAD_FACTOR * _settling_time(part, in_spec)[0])
    runner = _ChunkRunner(recording, part, out_spec, chunk_s, settle, torch.device(device))
    meta_extra = {"fingerprint": fingerprint, "pipeline": part.to_dict(), "chunk_s": runner.chunk_s, "pad_s": settle}
    if stamp is not None:
        meta_extra["source"] = stamp
    if entry is None:
        out = np.empty(runner.out_shape, dtype=np.float32)
        runner.run(out)
        meta = runner.metadata(meta_extra)
        _warn_cleanup(recording, runner.cleanup)
        events = [Event(**e) for e in meta.pop("events")]
        return Recording.from_array(out.T, meta.pop("sampling_rate"), meta.pop("channel_names"), events=events, **meta)
    try:
        _write_session(
            entry, runner.out_shape, lambda: runner.metadata(meta_extra), runner.run, overwrite=entry.exists()
        )
    except OSError:
        # another process (DataLoader worker, DDP rank) may have written the same entry meanwhile
        hit = _open_entry(entry, fingerprint, stamp)
        if hit is None:
            raise
        return hit
    _warn_cleanup(recording, runner.cleanup)
    return open_recording(entry)


def preprocess_recordings(recordings: Iterable[Recording], pipeline: Pipeline, **kwargs: Any) -> list[Recording]:
    """:func:`preprocess_recording` for each recording (e.g. a :class:`RecordingIndex`).

    Example:
        >>> recs = preprocess_recordings(RecordingIndex("corpus"), model.preprocess_pipeline)
    """
    return [preprocess_recording(r, pipeline, **kwargs) for r in recordings]


def clear_recording_cache(root: str | Path) -> int:
    """Delete every recording-preprocessing cache folder under ``root``; returns how many.

    Example:
        >>> clear_recording_cache("corpus")
        6
    """
    removed = 0
    for folder in sorted(Path(root).rglob(CACHE_FOLDER)):
        if folder.is_dir():
            shutil.rmtree(folder)
            removed += 1
    return removed


def _open_entry(entry: Path, fingerprint: str, stamp: dict[str, Any] | None) -> Recording | None:
    """The cached recording if the entry is complete and made from the same source; else None."""
    if not (entry / SIDECAR_NAME).is_file():
        return None
    try:
        rec = open_recording(entry)
    except (RecordingError, RecordingNotFoundError):
        return None
    made = rec.info.get(_INFO_KEY, {})
    if made.get("fingerprint") != fingerprint or made.get("source") != stamp:
        return None
    return rec


def _settling_time(node: Any, spec: SignalSpec) -> tuple[float, SignalSpec]:
    """Seconds the steps need to settle (their ``min_duration``: summed along a chain, the
    longest branch of a Branch), and the spec after them."""
    if isinstance(node, Transform):
        return node.min_duration(spec) or 0.0, node.output_spec(spec)
    if isinstance(node, Pipeline):
        total = 0.0
        for _, step in node.steps:
            seconds, spec = _settling_time(step, spec)
            total += seconds
        return total, spec
    longest = max(_settling_time(branch, spec)[0] for _, branch in node.branches)
    return longest, node.output_spec(spec)


class _ChunkRunner:
    """Runs a pipeline part over a recording chunk by chunk and writes the output rows."""

    def __init__(
        self,
        recording: Recording,
        part: Pipeline,
        out_spec: SignalSpec,
        chunk_s: float,
        pad_s: float,
        device: torch.device,
    ):
        self.rec = recording
        self.part = part
        self.device = device
        self.rate_out = float(out_spec.sampling_rate)
        self.out_channels = out_spec.channel_names
        n_in, n_out = recording.n_times, out_spec.n_times
        if n_out is None or out_spec.n_channels is None:
            raise PipelineError(
                f"the recording part's output size is unknown for {recording.name} (spec {out_spec}); its steps must "
                "report their output shape (output_spec)."
            )
        self.n_out = n_out
        self.out_shape = (n_out, out_spec.n_channels)
        ratio = Fraction(self.rate_out / recording.sampling_rate).limit_denominator(_MAX_RATE_DENOMINATOR)
        exact = abs(float(ratio) - self.rate_out / recording.sampling_rate) < 1e-12
        # chunk edges at multiples of q input samples fall on multiples of p output samples
        self.p, self.q = ratio.numerator, ratio.denominator
        chunk = max(self.q, int(round(chunk_s * recording.sampling_rate / self.q)) * self.q)
        pad = int(math.ceil(pad_s * recording.sampling_rate / self.q)) * self.q
        if not exact or n_in <= chunk + 2 * pad:
            chunk, pad = n_in, 0
        self.chunk, self.pad = chunk, pad
        self.chunk_s = chunk / recording.sampling_rate
        self.good = ~recording.bad_channels
        self.cleanup: dict[str, Any] = {"nonfinite_samples": 0, "gap_samples": 0, "nonfinite_channels": []}
        self.first_out: NeuralBatch | None = None

    # -- the pass -----------------------------------------------------------------------
    def run(self, out: np.ndarray) -> None:
        """Process the recording into ``out`` (``out_shape``, time-major)."""
        self._scan_channels()
        n_in = self.rec.n_times
        for s in range(0, n_in, self.chunk):
            e = min(s + self.chunk, n_in)
            a, b = max(0, s - self.pad), min(n_in, e + self.pad)
            x = self.rec.read(a, b)
            missing = ~np.isfinite(x)
            if missing.any():
                _interpolate_missing(x, missing)
            y = self._process(x)
            o_start = s * self.p // self.q
            o_stop = self.n_out if e == n_in else e * self.p // self.q
            lo = (s - a) * self.p // self.q
            hi = lo + o_stop - o_start
            if y.shape[1] < hi or (self.pad == 0 and y.shape[1] != hi):
                raise PipelineError(
                    f"the recording part returned {y.shape[1]} samples for {b - a} input samples of {self.rec.name}, "
                    f"expected {hi}; its output_spec and apply disagree about the output length."
                )
            y = y[:, lo:hi]
            if missing.any():
                self._restore_missing(y, missing, a, s - a, e - a, o_start)
            out[o_start:o_stop] = y.T

    def _scan_channels(self) -> None:
        """Find channels with no finite sample (flagged bad, filled with zeros)."""
        finite_any = np.zeros(self.rec.n_channels, dtype=bool)
        for s in range(0, self.rec.n_times, self.chunk):
            x = self.rec.read(s, min(s + self.chunk, self.rec.n_times))
            finite_any |= np.isfinite(x).any(axis=1)
        self.good = ~self.rec.bad_channels & finite_any
        self.cleanup["nonfinite_channels"] = [self.rec.channel_names[i] for i in np.flatnonzero(~finite_any)]

    def _restore_missing(self, y: np.ndarray, missing: np.ndarray, a: int, lo: int, hi: int, o_start: int) -> None:
        """Set output samples back to NaN where input was missing and count the clean-up.

        ``missing`` is the chunk's mask (input samples from ``a``); ``[lo, hi)`` its own part
        without the pads; ``y`` the output of that part, starting at output sample ``o_start``.
        """
        gap_time = missing[self.good].any(axis=0)
        self.cleanup["nonfinite_samples"] += int(missing[:, lo:hi].sum())
        self.cleanup["gap_samples"] += int(gap_time[lo:hi].sum())
        for g0, g1 in _runs(gap_time):
            j0 = math.ceil((a + g0) * self.p / self.q) - o_start
            j1 = math.ceil((a + g1) * self.p / self.q) - o_start
            if j1 > 0 and j0 < y.shape[1]:
                y[:, max(j0, 0) : min(j1, y.shape[1])] = np.nan
        if self.p == self.q == 1 and self.out_channels == self.rec.channel_names:
            y[missing[:, lo:hi]] = np.nan

    def _process(self, x: np.ndarray) -> np.ndarray:
        rec = self.rec
        pos = None if rec.channel_positions is None else torch.tensor(rec.channel_positions, dtype=torch.float32)
        batch = NeuralBatch(
            torch.from_numpy(x).unsqueeze(0).to(self.device),
            sampling_rate=rec.sampling_rate,
            channel_names=rec.channel_names,
            channel_positions=None if pos is None else pos.to(self.device),
            channel_mask=None if self.good.all() else torch.as_tensor(self.good, device=self.device).unsqueeze(0),
        )
        result = self.part(batch)
        if self.first_out is None:
            self.first_out = result
        return result.signals[0].detach().to("cpu", torch.float32).numpy()

    # -- metadata of the result -------------------------------------------------------------
    def metadata(self, extra: dict[str, Any]) -> dict[str, Any]:
        rec, first = self.rec, self.first_out
        assert first is not None, "metadata is known once the first chunk ran"
        names = first.channel_names
        if first.channel_mask is not None:
            bad = ~first.channel_mask[0].cpu().numpy()
        else:
            lookup = dict(zip(rec.channel_names, ~self.good, strict=True))
            bad = np.array([bool(lookup.get(n, False)) for n in names])
        pos = first.channel_positions
        pos = None if pos is None else pos.detach().cpu().double().numpy()
        duration = self.n_out / self.rate_out
        events = [
            Event(e.onset, max(0.0, min(e.duration, duration - e.onset)), e.label).to_dict()
            for e in rec.events
            if e.onset <= duration
        ]
        info = {**rec.info, _INFO_KEY: {**extra, "cleanup": dict(self.cleanup)}}
        meta = {
            "sampling_rate": self.rate_out,
            "channel_names": list(names),
            "channel_positions": None if pos is None else _positions_json(pos),
            "bad_channels": [bool(b) for b in bad],
            "subject_id": rec.subject_id,
            "session_id": rec.session_id,
            "events": events,
            "applied": [*rec.applied, extra["fingerprint"]],
            "info": info,
        }
        return meta


def _positions_json(pos: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else float(v) for v in row] for row in pos.tolist()]


def _interpolate_missing(x: np.ndarray, missing: np.ndarray) -> None:
    """Replace missing samples of each row of ``x`` in place by linear interpolation along time
    (the nearest finite value at the edges; 0 for a row with no finite value)."""
    t = np.arange(x.shape[1])
    for c in np.flatnonzero(missing.any(axis=1)):
        ok = ~missing[c]
        x[c] = np.interp(t, t[ok], x[c, ok]) if ok.any() else 0.0


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the True runs of a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _warn_cleanup(recording: Recording, cleanup: dict[str, Any]) -> None:
    if cleanup["nonfinite_samples"] or cleanup["nonfinite_channels"]:
        warnings.warn(
            f"{recording.name}: {cleanup['nonfinite_samples']} NaN/Inf samples were interpolated before the recording "
            f"part ran and set back to NaN after it ({cleanup['gap_samples']} time points of good channels); "
            f"channels without any finite sample, flagged bad: {cleanup['nonfinite_channels'] or 'none'}.",
            stacklevel=3,
        )
