"""Readers: recordings from MNE ``Raw`` objects (EDF, BrainVision, FIF, ...) and BIDS iEEG datasets.

MNE and mne-bids are optional (``pip install neurocrane[mne]``) and imported only when a reader
is called. Readers return in-memory :class:`~neurocrane.data.recording.Recording` objects
(float32, half the memory of MNE's float64 preload); write them with
:func:`~neurocrane.data.recording.write_recording` (or :func:`convert_bids`) to get the
memory-mapped on-disk format.

What is carried over:

* signals of the data channels (``picks="data"``: sEEG, ECoG, EEG, DBS, ...), in µV by default;
* channel names; bad channels from ``raw.info["bads"]`` (for BIDS: ``status`` in channels.tsv);
* positions in mm from the channel locations (for BIDS: electrodes.tsv, in the units its
  coordsystem.json gives); channels without a location get NaN, and no location at all gives
  ``None``;
* annotations as :class:`~neurocrane.data.recording.Event` objects (onset relative to the first
  sample). Annotations not entirely inside the recording are dropped and counted in a warning
  (or raise, with ``events_outside="error"``).

Example:
    >>> rec = read_raw_file("sub-01_ses-01_ieeg.edf", subject_id="sub-01")
    >>> index = convert_bids("bids_root", "corpus")
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from neurocrane.data.recording import Event, Recording, RecordingIndex, RecordingNotFoundError, write_recording
from neurocrane.errors import InputError, NeuroCraneError

__all__ = [
    "MissingDependencyError",
    "recording_from_raw",
    "read_raw_file",
    "read_bids",
    "convert_bids",
]

_UNIT_FACTORS = {"V": 1.0, "mV": 1e3, "uV": 1e6, "µV": 1e6}
_COORD_UNITS_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}
_BIDS_RAW_EXTENSIONS = [".edf", ".vhdr", ".set", ".fif", ".nwb", ".mefd", ".bdf"]
_READ_BYTES = 64 * 2**20


class MissingDependencyError(NeuroCraneError, ImportError):
    """An optional dependency (an extra) is not installed."""


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"this reader needs the optional package '{module}', which is not installed: "
            "pip install neurocrane[mne]"
        ) from err


def recording_from_raw(
    raw: Any,
    *,
    picks: str | Sequence[str] = "data",
    unit: str = "uV",
    subject_id: str = "sub-01",
    session_id: str = "ses-01",
    events_outside: Literal["drop", "error"] = "drop",
    channel_positions: Any = None,
) -> Recording:
    """A :class:`Recording` from an MNE ``Raw`` (preloaded or not).

    Args:
        raw: ``mne.io.BaseRaw``.
        picks: Channels to keep (MNE picks: ``"data"``, a channel type, or names).
        unit: Unit of the returned signals: ``"uV"`` (default), ``"mV"`` or ``"V"``.
        subject_id, session_id: Identifiers of the recording.
        events_outside: What to do with annotations not entirely inside the recording.
        channel_positions: ``(C, 3)`` mm positions of the picked channels to use instead of
            the raw's channel locations.

    Returns:
        An in-memory float32 recording; ``info`` holds ``unit``, ``line_freq``, ``source``
        (the file, if any) and ``channel_types``.

    Example:
        >>> raw = mne.io.read_raw_edf("rec.edf")
        >>> recording_from_raw(raw, subject_id="sub-07").channel_names[:2]
        ('LA1', 'LA2')
    """
    mne = _require("mne")
    if not isinstance(raw, mne.io.BaseRaw):
        raise InputError(f"recording_from_raw: expected an mne.io.Raw; got {type(raw).__name__}.")
    if unit not in _UNIT_FACTORS:
        raise InputError(f"recording_from_raw: unit must be one of {sorted(_UNIT_FACTORS)}; got {unit!r}.")
    try:
        raw = raw.copy().pick(picks)
    except ValueError as err:
        raise InputError(f"recording_from_raw: picks={picks!r} selects no usable channels ({err}).") from None
    n_ch, n_times = len(raw.ch_names), raw.n_times
    data = np.empty((n_ch, n_times), dtype=np.float32)
    step = max(1, _READ_BYTES // (8 * n_ch))
    factor = _UNIT_FACTORS[unit]
    for a in range(0, n_times, step):
        b = min(a + step, n_times)
        data[:, a:b] = raw.get_data(start=a, stop=b) * factor
    fs = float(raw.info["sfreq"])
    events = _events_from_annotations(raw, n_times / fs, events_outside)
    return Recording.from_array(
        data,
        fs,
        raw.ch_names,
        channel_positions=_positions_from_info(raw.info) if channel_positions is None else channel_positions,
        bad_channels=[c for c in raw.info["bads"] if c in raw.ch_names],
        subject_id=subject_id,
        session_id=session_id,
        events=events,
        info={
            "unit": unit,
            "line_freq": raw.info.get("line_freq"),
            "source": str(raw.filenames[0]) if raw.filenames and raw.filenames[0] else None,
            "channel_types": raw.get_channel_types(),
        },
    )


def _positions_from_info(info: Any) -> np.ndarray | None:
    loc = np.array([ch["loc"][:3] for ch in info["chs"]], dtype=np.float64)
    loc[np.all(loc == 0, axis=1)] = np.nan  # MNE writes zeros for "no location" in some formats
    if np.isnan(loc).all():
        return None
    return loc * 1000.0  # m -> mm


def _events_from_annotations(raw: Any, duration: float, events_outside: str) -> list[Event]:
    annotations = raw.annotations
    if len(annotations) == 0:
        return []
    fs = float(raw.info["sfreq"])
    start = raw.time_as_index(annotations.onset, use_rounding=True, origin=annotations.orig_time) / fs
    events, outside = [], []
    for onset, length, label in zip(start, annotations.duration, annotations.description, strict=True):
        if onset < 0 or onset + length > duration + 0.5 / fs:
            outside.append(f"{label}@{onset:g}s+{length:g}s")
            continue
        events.append(Event(float(onset), float(min(length, duration - onset)), str(label)))
    if outside:
        message = (
            f"{len(outside)} annotation(s) lie outside the recording (0 to {duration:g} s): "
            f"{', '.join(outside[:5])}{' ...' if len(outside) > 5 else ''}"
        )
        if events_outside == "error":
            raise InputError(message + ". Crop or drop them, or pass events_outside='drop'.")
        warnings.warn(message + "; dropped.", stacklevel=3)
    return events


def read_raw_file(
    path: str | Path,
    *,
    picks: str | Sequence[str] = "data",
    unit: str = "uV",
    subject_id: str = "sub-01",
    session_id: str = "ses-01",
    events_outside: Literal["drop", "error"] = "drop",
    **read_kwargs: Any,
) -> Recording:
    """Read any file MNE reads (EDF/BDF, BrainVision ``.vhdr``, FIF, EEGLAB ``.set``, ...).

    Args:
        path: The file.
        picks, unit, subject_id, session_id, events_outside: See :func:`recording_from_raw`.
        **read_kwargs: Passed to ``mne.io.read_raw``.

    Returns:
        An in-memory :class:`Recording`.

    Raises:
        RecordingNotFoundError: the file does not exist.

    Example:
        >>> rec = read_raw_file("sub-01_ieeg.vhdr", subject_id="sub-01", session_id="ses-02")
    """
    mne = _require("mne")
    path = Path(path)
    if not path.is_file():
        raise RecordingNotFoundError(f"recording file {str(path)!r} does not exist.")
    raw = mne.io.read_raw(path, preload=False, verbose="error", **read_kwargs)
    return recording_from_raw(
        raw, picks=picks, unit=unit, subject_id=subject_id, session_id=session_id, events_outside=events_outside
    )


def _session_id(session: str | None, task: str | None, acquisition: str | None, run: str | int | None) -> str:
    parts = [f"ses-{session}"] if session else []
    parts += [f"task-{task}"] if task else []
    parts += [f"acq-{acquisition}"] if acquisition else []
    parts += [f"run-{run}"] if run is not None else []
    return "_".join(parts) or "ses-01"


def read_bids(
    bids_root: str | Path,
    subject: str,
    *,
    session: str | None = None,
    task: str | None = None,
    acquisition: str | None = None,
    run: str | int | None = None,
    datatype: str = "ieeg",
    unit: str = "uV",
    events_outside: Literal["drop", "error"] = "drop",
) -> Recording:
    """Read one recording of a BIDS iEEG dataset (via mne-bids).

    Bad channels come from the ``status`` column of channels.tsv; positions from
    electrodes.tsv (x, y, z, converted to mm with ``iEEGCoordinateUnits`` of the matching
    coordsystem.json; ``None`` when there is no electrodes file or its units are not m/cm/mm).

    Args:
        bids_root: Root of the BIDS dataset.
        subject, session, task, acquisition, run: BIDS entities (without prefixes).
        datatype: ``"ieeg"`` (default) or ``"eeg"``.
        unit, events_outside: See :func:`recording_from_raw`.

    Returns:
        An in-memory :class:`Recording` with ``subject_id="sub-<subject>"`` and a
        ``session_id`` made of the other entities (``"ses-01_task-rest_run-1"``).

    Example:
        >>> rec = read_bids("ds003029", subject="01", session="presurgery", task="ictal", run="01")
    """
    mne_bids = _require("mne_bids")
    root = Path(bids_root)
    if not root.is_dir():
        raise RecordingNotFoundError(f"BIDS root {str(root)!r} does not exist.")
    bids_path = mne_bids.BIDSPath(
        root=root, subject=subject, session=session, task=task, acquisition=acquisition, run=run, datatype=datatype
    )
    matches = bids_path.match()
    raw_files = [p for p in matches if p.suffix == datatype and p.extension in _BIDS_RAW_EXTENSIONS]
    if not raw_files:
        raise RecordingNotFoundError(
            f"no {datatype} recording for subject {subject!r} session {session!r} task {task!r} run {run!r} "
            f"under {str(root)!r}."
        )
    if len(raw_files) > 1:
        names = [p.basename for p in raw_files]
        raise InputError(f"read_bids: {len(raw_files)} recordings match {names}; give session/task/run to choose one.")
    raw = mne_bids.read_raw_bids(raw_files[0], verbose="error").pick("data")
    positions = _positions_from_electrodes_tsv(Path(raw_files[0].directory), subject, session, raw.ch_names)
    rec = recording_from_raw(
        raw,
        unit=unit,
        subject_id=f"sub-{subject}",
        session_id=_session_id(session, task, acquisition, run),
        events_outside=events_outside,
        channel_positions=positions,
    )
    rec.info["source"] = str(raw_files[0].fpath)
    return rec


def _positions_from_electrodes_tsv(
    folder: Path, subject: str, session: str | None, channel_names: Sequence[str]
) -> np.ndarray | None:
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    files = sorted(folder.glob(f"{prefix}*_electrodes.tsv"))
    skipped = []
    for tsv in files:  # one per coordinate space; the first with usable coordinates wins
        coordsystem = tsv.with_name(tsv.name.replace("_electrodes.tsv", "_coordsystem.json"))
        units = None
        if coordsystem.is_file():
            units = json.loads(coordsystem.read_text(encoding="utf-8")).get("iEEGCoordinateUnits")
        if units not in _COORD_UNITS_MM:
            skipped.append(f"{tsv.name} (units {units!r})")
            continue
        with open(tsv, newline="", encoding="utf-8") as fh:
            rows = {row["name"]: row for row in csv.DictReader(fh, delimiter="\t")}
        pos = np.full((len(channel_names), 3), np.nan)
        for i, name in enumerate(channel_names):
            row = rows.get(name)
            if row is not None:
                pos[i] = [_tsv_float(row.get(k)) for k in ("x", "y", "z")]
        if not np.isnan(pos).all():
            return pos * _COORD_UNITS_MM[units]
        skipped.append(f"{tsv.name} (no coordinates for these channels)")
    if skipped:
        warnings.warn(f"electrode positions ignored: {', '.join(skipped)}; units must be m, cm or mm.", stacklevel=3)
    return None


def _tsv_float(value: str | None) -> float:
    try:
        out = float(value) if value not in (None, "", "n/a") else math.nan
    except ValueError:
        return math.nan
    return out


def convert_bids(
    bids_root: str | Path,
    out_root: str | Path,
    *,
    datatype: str = "ieeg",
    unit: str = "uV",
    dtype: str = "float32",
    overwrite: bool = False,
) -> RecordingIndex:
    """Convert every ``datatype`` recording of a BIDS dataset to the on-disk format.

    Sessions go to ``out_root/sub-<subject>/<session_id>`` (see :func:`read_bids`). One
    recording is held in memory at a time.

    Returns:
        A :class:`RecordingIndex` over ``out_root``.

    Example:
        >>> index = convert_bids("bids_root", "corpus")
        >>> index.sessions[0][:2]
        ('sub-01', 'ses-01_task-rest')
    """
    mne_bids = _require("mne_bids")
    root = Path(bids_root)
    if not root.is_dir():
        raise RecordingNotFoundError(f"BIDS root {str(root)!r} does not exist.")
    paths = mne_bids.find_matching_paths(root, datatypes=datatype, suffixes=datatype, extensions=_BIDS_RAW_EXTENSIONS)
    if not paths:
        raise RecordingNotFoundError(f"no {datatype} recordings under BIDS root {str(root)!r}.")
    for bp in paths:
        rec = read_bids(
            root, bp.subject, session=bp.session, task=bp.task, acquisition=bp.acquisition, run=bp.run,
            datatype=datatype, unit=unit,
        )
        write_recording(Path(out_root) / rec.subject_id / rec.session_id, rec, dtype=dtype, overwrite=overwrite)
    return RecordingIndex(out_root)
