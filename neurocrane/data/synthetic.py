"""A synthetic SEEG corpus: realistic enough to exercise preprocessing, small and fast to make.

Each subject gets its own montage of depth shafts (``LA1..LA8``, ``RH1..RH8``, ...) with contacts
3.5 mm apart along a line from a deep target to the skull. Each session (in µV) sums:

* **1/f background**, spatially correlated along each shaft (contacts share an AR(1) mix of
  their neighbours' activity) — dominates the raw power at low frequencies;
* a **common-mode** component on every channel (what a common reference picks up), which a
  common average reference removes;
* **oscillations**: a theta/alpha/beta rhythm per shaft with waxing and waning amplitude;
* **line noise** at ``line_freq`` (50 or 60 Hz) and its harmonics below Nyquist, with a
  per-channel gain and a slowly drifting amplitude; its 2nd harmonic (100/120 Hz) falls in the
  high-gamma band, so high-gamma power is only clean after a notch filter;
* a per-channel DC offset (a high-pass removes it);
* **labelled events** (default labels ``stim_a``/``stim_b``, ~1 per ``event_interval_s``): each
  label drives a high-gamma (70-150 Hz) burst in its own few contiguous contacts. The burst's
  power is ``hg_snr``² times the background's high-gamma power, but a tiny fraction of the raw
  power: a linear probe on (notched, band-passed) high-gamma power separates event windows
  from baseline windows, one on raw amplitude is near chance;
* **bad channels** (flat or very noisy; flagged in ``bad_channels``) and occasional **NaN gaps**
  (all channels, 0.1-0.5 s, away from events), as in real data loss.

Generation is deterministic given ``seed``, subject and session: the montage depends on
``(seed, subject)`` only, so a subject keeps its electrodes across sessions.

Example:
    >>> rec = make_synthetic_recording(duration_s=10.0, seed=1)
    >>> rec.channel_names[:3], rec.info["line_freq"]
    (('LA1', 'LA2', 'LA3'), 60.0)
    >>> index = make_synthetic_corpus("/tmp/synthetic", n_subjects=2, sessions_per_subject=1)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from neurocrane.data.recording import (
    SIDECAR_NAME,
    Event,
    Recording,
    RecordingIndex,
    read_sidecar,
    write_recording,
)
from neurocrane.errors import InputError

__all__ = ["make_synthetic_recording", "make_synthetic_corpus", "synthetic_montage", "SHAFT_PREFIXES"]

#: Shaft labels drawn for montages: hemisphere (L/R) + target (Amygdala, Hippocampus, Temporal,
#: Occipital, Frontal, Cingulate, Insula).
SHAFT_PREFIXES = ("LA", "LH", "LT", "LO", "LF", "LC", "LI", "RA", "RH", "RT", "RO", "RF", "RC", "RI")
HIGH_GAMMA = (70.0, 150.0)
_GENERATOR_VERSION = 1
_CONTACT_SPACING_MM = 3.5


def synthetic_montage(
    subject: int = 0, *, seed: int = 0, n_shafts: int | None = None, contacts_per_shaft: int = 8
) -> tuple[tuple[str, ...], np.ndarray, tuple[tuple[int, int], ...]]:
    """The electrode montage of one synthetic subject.

    Args:
        subject: Subject number (montages differ between subjects).
        seed: Corpus seed.
        n_shafts: Number of depth shafts (default: 4 to 6, drawn per subject).
        contacts_per_shaft: Contacts on each shaft, numbered 1 (deepest) upwards.

    Returns:
        ``(channel_names, positions (C, 3) mm, shafts)`` where ``shafts`` lists each shaft's
        ``(first_channel, n_contacts)``.

    Example:
        >>> names, pos, shafts = synthetic_montage(0, n_shafts=2, contacts_per_shaft=4)
        >>> len(names), pos.shape
        (8, (8, 3))
    """
    if contacts_per_shaft < 2:
        raise InputError(f"synthetic_montage: contacts_per_shaft must be at least 2; got {contacts_per_shaft}.")
    rng = np.random.default_rng([seed, subject, 0])
    n = int(rng.integers(4, 7)) if n_shafts is None else int(n_shafts)
    if not 1 <= n <= len(SHAFT_PREFIXES):
        raise InputError(f"synthetic_montage: n_shafts must be 1..{len(SHAFT_PREFIXES)}; got {n_shafts}.")
    prefixes = sorted(rng.choice(SHAFT_PREFIXES, size=n, replace=False).tolist())
    names: list[str] = []
    positions: list[np.ndarray] = []
    shafts: list[tuple[int, int]] = []
    for prefix in prefixes:
        side = -1.0 if prefix[0] == "L" else 1.0
        target = np.array([side * rng.uniform(15, 35), rng.uniform(-40, 20), rng.uniform(-25, 15)])
        entry = np.array([side * rng.uniform(60, 70), target[1] + rng.uniform(-10, 10), target[2] + rng.uniform(-5, 15)])
        direction = (entry - target) / np.linalg.norm(entry - target)
        shafts.append((len(names), contacts_per_shaft))
        for k in range(contacts_per_shaft):
            names.append(f"{prefix}{k + 1}")
            positions.append(np.round(target + k * _CONTACT_SPACING_MM * direction, 1))
    return tuple(names), np.array(positions), tuple(shafts)


def _shaped_noise(rng: np.random.Generator, n: int, n_times: int, fs: float, gain: np.ndarray) -> np.ndarray:
    """White noise coloured by the amplitude response ``gain`` (one value per rfft bin),
    scaled to unit standard deviation per row."""
    spec = np.fft.rfft(rng.standard_normal((n, n_times)), axis=-1) * gain
    out = np.fft.irfft(spec, n=n_times, axis=-1)
    out /= out.std(axis=-1, keepdims=True) + 1e-12
    return out


def _band_gain(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return ((freqs >= lo) & (freqs <= hi)).astype(np.float64)


def _shaft_mix(x: np.ndarray, shafts: tuple[tuple[int, int], ...], rho: float) -> np.ndarray:
    """AR(1) mixing along each shaft: neighbouring contacts see correlated activity."""
    out = x.copy()
    a = math.sqrt(1.0 - rho * rho)
    for first, count in shafts:
        for c in range(first + 1, first + count):
            out[c] = rho * out[c - 1] + a * x[c]
    return out


def _event_times(
    rng: np.random.Generator, duration: float, interval: float, event_duration: float, labels: tuple[str, ...]
) -> list[Event]:
    events = []
    t = 2.0 + rng.uniform(0, interval / 2)
    while t + event_duration < duration - 1.0:
        events.append(Event(round(t, 4), event_duration, str(rng.choice(labels))))
        t += interval * rng.uniform(0.75, 1.25)
    return events


def _hann_envelope(events: list[Event], fs: float, n_times: int) -> np.ndarray:
    env = np.zeros(n_times)
    for e in events:
        a = int(round(e.onset * fs))
        n = max(2, int(round(e.duration * fs)))
        b = min(a + n, n_times)
        env[a:b] = np.maximum(env[a:b], np.hanning(n)[: b - a] ** 0.5)
    return env


def make_synthetic_recording(
    *,
    subject: int = 0,
    session: int = 0,
    duration_s: float = 60.0,
    sampling_rate: float = 512.0,
    line_freq: float = 60.0,
    seed: int = 0,
    n_shafts: int | None = None,
    contacts_per_shaft: int = 8,
    event_labels: tuple[str, ...] = ("stim_a", "stim_b"),
    event_interval_s: float = 4.0,
    event_duration_s: float = 1.0,
    hg_snr: float = 2.0,
    line_noise_uv: float = 40.0,
    n_bad_channels: int | None = None,
    nan_gap_probability: float = 0.5,
    subject_id: str | None = None,
    session_id: str | None = None,
) -> Recording:
    """Generate one synthetic SEEG session in memory (µV, float32). See the module docstring
    for what it contains.

    Args:
        subject, session: Numbers of the subject (montage, responsive contacts) and session.
        duration_s: Length in seconds.
        sampling_rate: Hz; must be above 2 x 150 Hz so the high-gamma band exists.
        line_freq: Mains frequency (50 or 60 Hz); harmonics below 0.45 x rate are added.
        seed: Corpus seed; the same arguments always give the same recording.
        n_shafts, contacts_per_shaft: Montage size (see :func:`synthetic_montage`).
        event_labels: Event classes; each drives high-gamma in its own contacts.
        event_interval_s: Mean time between event onsets.
        event_duration_s: Length of each event (and of its high-gamma burst).
        hg_snr: Amplitude of the high-gamma burst relative to the background's high-gamma
            amplitude in the responsive contacts (0 for no effect).
        line_noise_uv: Amplitude of the line-noise fundamental (µV).
        n_bad_channels: Bad channels (flat or noisy; flagged). Default: 1 or 2, drawn.
        nan_gap_probability: Chance that the session has one NaN gap (data loss).
        subject_id, session_id: Identifiers (default ``sub-01``/``ses-01`` from the numbers).

    Returns:
        An in-memory :class:`Recording`. Its ``info`` holds ``unit``, ``line_freq``,
        ``responsive_channels`` (label → channel names), ``bad_channel_kinds``,
        ``nan_gaps`` (``[[start_s, stop_s], ...]``) and the generation parameters.

    Example:
        >>> rec = make_synthetic_recording(duration_s=30.0, line_freq=50.0, seed=3)
        >>> sorted(rec.info["responsive_channels"])
        ['stim_a', 'stim_b']
    """
    params = _params_dict(dict(locals()))
    fs = float(sampling_rate)
    if fs <= 2 * HIGH_GAMMA[1]:
        raise InputError(f"make_synthetic_recording: sampling_rate must exceed {2 * HIGH_GAMMA[1]:g} Hz; got {fs:g}.")
    if not 0 < line_freq < fs / 2:
        raise InputError(f"make_synthetic_recording: line_freq must be in (0, {fs / 2:g}) Hz; got {line_freq}.")
    if duration_s < 4.0 or event_duration_s <= 0 or event_interval_s <= event_duration_s:
        raise InputError(
            "make_synthetic_recording: need duration_s >= 4 and 0 < event_duration_s < event_interval_s; got "
            f"duration_s={duration_s}, event_duration_s={event_duration_s}, event_interval_s={event_interval_s}."
        )
    if not event_labels:
        raise InputError("make_synthetic_recording: event_labels must name at least one class.")
    names, positions, shafts = synthetic_montage(
        subject, seed=seed, n_shafts=n_shafts, contacts_per_shaft=contacts_per_shaft
    )
    n_ch = len(names)
    n_times = int(round(duration_s * fs))
    freqs = np.fft.rfftfreq(n_times, 1.0 / fs)
    subject_rng = np.random.default_rng([seed, subject, 1])
    rng = np.random.default_rng([seed, subject, session + 1, 2])

    # which contacts respond to which label: a run of 3 contacts on a shaft, one shaft per label
    shaft_order = subject_rng.permutation(len(shafts))
    responsive: dict[str, list[int]] = {}
    for i, label in enumerate(event_labels):
        first, count = shafts[shaft_order[i % len(shafts)]]
        start = first + int(subject_rng.integers(0, max(1, count - 2)))
        responsive[label] = list(range(start, min(start + 3, first + count)))

    # 1/f background, correlated along shafts
    exponent = subject_rng.uniform(1.6, 2.2)
    pink = 1.0 / np.maximum(freqs, 0.5) ** (exponent / 2)
    pink[0] = 0.0
    background = _shaped_noise(rng, n_ch, n_times, fs, pink)
    background = _shaft_mix(background, shafts, rho=0.7) * rng.uniform(20, 35, size=(n_ch, 1))
    spec = np.fft.rfft(background, axis=-1)
    hg_band = _band_gain(freqs, *HIGH_GAMMA).astype(bool)
    background_hg_std = np.sqrt(2.0 * (np.abs(spec[:, hg_band]) ** 2).sum(axis=-1)) / n_times

    signals = background
    signals += _shaped_noise(rng, 1, n_times, fs, pink) * 30.0 * rng.uniform(0.8, 1.2, size=(n_ch, 1))
    for first, count in shafts:
        f0 = rng.choice([6.0, 10.0, 20.0]) * rng.uniform(0.9, 1.1)
        rhythm = _shaped_noise(rng, 1, n_times, fs, np.exp(-0.5 * ((freqs - f0) / 1.0) ** 2))
        signals[first : first + count] += rhythm * rng.uniform(5, 15) * np.linspace(1.0, 0.4, count)[:, None]

    drift = _shaped_noise(rng, 1, n_times, fs, _band_gain(freqs, 0.0, 0.1) * (freqs > 0))[0]
    line_amp = line_noise_uv * np.clip(1.0 + 0.5 * drift, 0.1, None)
    t = np.arange(n_times) / fs
    line_gain = rng.uniform(0.5, 1.5, size=(n_ch, 1))
    harmonic = 1
    while harmonic * line_freq < 0.45 * fs:
        phase = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.1, size=(n_ch, 1))
        signals += line_gain * (line_amp / harmonic) * np.sin(2 * np.pi * harmonic * line_freq * t + phase)
        harmonic += 1
    signals += rng.uniform(-50, 50, size=(n_ch, 1))

    events = _event_times(rng, float(duration_s), float(event_interval_s), float(event_duration_s), tuple(event_labels))
    hg = _shaped_noise(rng, n_ch, n_times, fs, _band_gain(freqs, *HIGH_GAMMA))
    for label, chans in responsive.items():
        env = _hann_envelope([e for e in events if e.label == label], fs, n_times)
        for c in chans:
            signals[c] += hg_snr * background_hg_std[c] * env * hg[c]

    # bad channels (never a responsive contact) and data loss
    eligible = [c for c in range(n_ch) if all(c not in chans for chans in responsive.values())]
    n_bad = int(rng.integers(1, 3)) if n_bad_channels is None else int(n_bad_channels)
    bad_idx = sorted(rng.choice(eligible, size=min(n_bad, len(eligible)), replace=False).tolist())
    kinds = {}
    for c in bad_idx:
        if rng.random() < 0.5:
            signals[c] = rng.normal(0, 0.5, n_times) + rng.uniform(-5, 5)
            kinds[names[c]] = "flat"
        else:
            signals[c] = rng.normal(0, 400, n_times)
            kinds[names[c]] = "noisy"
    gaps = []
    if rng.random() < nan_gap_probability:
        length = rng.uniform(0.1, 0.5)
        for _ in range(20):  # find a spot at least 1 s away from every event
            start = rng.uniform(0.5, duration_s - length - 0.5)
            if all(start + length < e.onset - 1.0 or start > e.end + 1.0 for e in events):
                a, b = int(round(start * fs)), int(round((start + length) * fs))
                signals[:, a:b] = np.nan
                gaps.append([round(a / fs, 6), round(b / fs, 6)])
                break

    return Recording.from_array(
        signals.astype(np.float32),
        fs,
        names,
        channel_positions=positions,
        bad_channels=[names[c] for c in bad_idx],
        subject_id=subject_id or f"sub-{subject + 1:02d}",
        session_id=session_id or f"ses-{session + 1:02d}",
        events=events,
        info={
            "unit": "uV",
            "line_freq": float(line_freq),
            "source": "neurocrane.data.synthetic",
            "responsive_channels": {label: [names[c] for c in chans] for label, chans in responsive.items()},
            "bad_channel_kinds": kinds,
            "nan_gaps": gaps,
            "synthetic": params,
        },
    )


def make_synthetic_corpus(
    root: str | Path,
    *,
    n_subjects: int = 3,
    sessions_per_subject: int = 2,
    duration_s: float = 60.0,
    sampling_rate: float = 512.0,
    line_freq: float = 60.0,
    seed: int = 0,
    dtype: str = "float32",
    **recording_kwargs: Any,
) -> RecordingIndex:
    """Write a synthetic corpus to ``root/sub-XX/ses-YY`` and return its index.

    Sessions already on disk with the same generation parameters are reused (the generator is
    deterministic); synthetic sessions made with other parameters are regenerated. A folder
    that is not a synthetic session, or sessions under ``root`` that are not part of this
    corpus, raise ``FileExistsError`` (use an empty folder).

    Args:
        root: Corpus folder.
        n_subjects, sessions_per_subject: Corpus size.
        duration_s, sampling_rate, line_freq, seed: See :func:`make_synthetic_recording`.
        dtype: Storage dtype, ``"float32"`` (keeps NaN gaps) or ``"int16"`` (needs
            ``nan_gap_probability=0``).
        **recording_kwargs: Other :func:`make_synthetic_recording` arguments.

    Returns:
        A :class:`RecordingIndex` over ``root``.

    Example:
        >>> index = make_synthetic_corpus("data/synthetic", n_subjects=3, sessions_per_subject=2)
        >>> len(index)
        6
    """
    root = Path(root)
    if n_subjects < 1 or sessions_per_subject < 1:
        raise InputError(
            f"make_synthetic_corpus: need n_subjects >= 1 and sessions_per_subject >= 1; got {n_subjects}, "
            f"{sessions_per_subject}."
        )
    wanted = set()
    for subject in range(n_subjects):
        for session in range(sessions_per_subject):
            folder = root / f"sub-{subject + 1:02d}" / f"ses-{session + 1:02d}"
            wanted.add(folder.resolve())
            kwargs = dict(
                subject=subject,
                session=session,
                duration_s=duration_s,
                sampling_rate=sampling_rate,
                line_freq=line_freq,
                seed=seed,
                **recording_kwargs,
            )
            if _existing_params(folder) == (_params_key(kwargs), dtype):
                continue
            write_recording(folder, make_synthetic_recording(**kwargs), dtype=dtype, overwrite=folder.exists())
    index = RecordingIndex(root)
    extra = [str(p) for _, _, p in index.sessions if p.resolve() not in wanted]
    if extra:
        raise FileExistsError(
            f"make_synthetic_corpus: {root} also holds sessions that are not part of this corpus: {extra[:5]}. "
            "Use an empty folder (or delete them)."
        )
    return index


_FLOAT_PARAMS = (
    "duration_s", "sampling_rate", "line_freq", "event_interval_s", "event_duration_s", "hg_snr",
    "line_noise_uv", "nan_gap_probability",
)


def _params_dict(args: dict[str, Any]) -> dict[str, Any]:
    """The generation parameters as stored in ``info["synthetic"]`` (JSON types)."""
    params = {k: v for k, v in args.items() if k not in ("subject_id", "session_id")}
    params.update({k: float(params[k]) for k in _FLOAT_PARAMS})
    params["event_labels"] = list(params["event_labels"])
    params["generator_version"] = _GENERATOR_VERSION
    return params


def _params_key(kwargs: dict[str, Any]) -> str:
    return json.dumps(_params_dict(make_synthetic_recording.__kwdefaults__ | kwargs), sort_keys=True)


def _existing_params(folder: Path) -> tuple[str, str] | None:
    if not folder.exists():
        return None
    if not (folder / SIDECAR_NAME).is_file():
        raise FileExistsError(f"make_synthetic_corpus: {str(folder)!r} exists and is not a recording folder.")
    meta = read_sidecar(folder)
    params = (meta.get("info") or {}).get("synthetic")
    if params is None:
        raise FileExistsError(
            f"make_synthetic_corpus: {str(folder)!r} holds a recording that is not synthetic; refusing to replace it."
        )
    return json.dumps(params, sort_keys=True), meta["dtype"]
