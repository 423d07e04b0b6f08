"""Readers: MNE Raw (EDF, FIF) and BIDS iEEG, on files the tests write themselves."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import mne
import mne_bids
import numpy as np
import pytest

from neurocrane.data import RecordingIndex, RecordingNotFoundError, open_recording
from neurocrane.data.readers import (
    MissingDependencyError,
    _require,
    convert_bids,
    read_bids,
    read_raw_file,
    recording_from_raw,
)
from neurocrane.errors import InputError

FS = 256.0
NAMES = ["LA1", "LA2", "LA3", "RH1", "RH2"]


def _raw(n_seconds: float = 8.0, seed: int = 0) -> mne.io.RawArray:
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 50e-6, size=(len(NAMES), int(n_seconds * FS)))  # volts
    info = mne.create_info(NAMES + ["TRIG"], FS, ch_types=["seeg"] * len(NAMES) + ["stim"])
    raw = mne.io.RawArray(np.vstack([data, np.zeros((1, data.shape[1]))]), info, verbose="error")
    raw.set_annotations(mne.Annotations(onset=[1.0, 2.5], duration=[0.5, 1.0], description=["stim_a", "stim_b"]))
    raw.info["line_freq"] = 50.0
    return raw


def test_from_raw_picks_data_channels_converts_to_uv_and_keeps_metadata():
    raw = _raw()
    raw.info["bads"] = ["LA2"]
    pos_m = np.arange(15, dtype=float).reshape(5, 3) * 1e-3 + 0.01
    montage = mne.channels.make_dig_montage(ch_pos=dict(zip(NAMES, pos_m, strict=True)), coord_frame="head")
    raw.set_montage(montage)
    rec = recording_from_raw(raw, subject_id="sub-07", session_id="ses-02")
    assert rec.channel_names == tuple(NAMES)  # the stim channel is not a data channel
    np.testing.assert_allclose(rec.read(0, rec.n_times), raw.get_data(picks=NAMES) * 1e6, rtol=1e-5, atol=1e-3)
    assert rec.bad_channels.tolist() == [False, True, False, False, False]
    np.testing.assert_allclose(rec.channel_positions, pos_m * 1000.0, atol=1e-6)
    assert [(e.onset, e.duration, e.label) for e in rec.events] == [(1.0, 0.5, "stim_a"), (2.5, 1.0, "stim_b")]
    assert (rec.subject_id, rec.session_id, rec.info["unit"], rec.info["line_freq"]) == ("sub-07", "ses-02", "uV", 50.0)
    volts = recording_from_raw(raw, unit="V")
    np.testing.assert_allclose(volts.read(0, 10), raw.get_data(picks=NAMES, stop=10), rtol=1e-5)


def test_from_raw_drops_and_counts_annotations_outside_or_raises():
    raw = _raw(n_seconds=4.0)
    raw.set_annotations(mne.Annotations(onset=[1.0, 3.5], duration=[0.5, 0.2], description=["in", "past_end"]))
    raw.annotations.duration[1] = 2.0  # as a damaged file may hold; MNE itself crops on set_annotations
    with pytest.warns(UserWarning, match="1 annotation"):
        rec = recording_from_raw(raw)
    assert [e.label for e in rec.events] == ["in"]
    with pytest.raises(InputError, match="outside the recording"):
        recording_from_raw(raw, events_outside="error")


def test_edf_round_trip(tmp_path: Path):
    raw = _raw()
    file = tmp_path / "rec.edf"
    mne.export.export_raw(file, raw.copy().pick(NAMES), fmt="edf", verbose="error")
    rec = read_raw_file(file, subject_id="sub-02")
    assert rec.channel_names == tuple(NAMES)
    assert rec.sampling_rate == FS and rec.n_times == raw.n_times
    # EDF stores 16 bits over the data range (about +-250 uV): one step is ~0.01 uV
    np.testing.assert_allclose(rec.read(0, rec.n_times), raw.get_data(picks=NAMES) * 1e6, atol=0.05)
    assert [e.label for e in rec.events] == ["stim_a", "stim_b"]
    assert rec.events[1].onset == pytest.approx(2.5, abs=1 / FS)
    assert rec.info["source"].endswith("rec.edf")


def test_fif_keeps_bads_and_positions(tmp_path: Path):
    raw = _raw()
    raw.info["bads"] = ["RH1"]
    pos_m = np.random.default_rng(1).uniform(-0.05, 0.05, size=(5, 3))
    raw.set_montage(mne.channels.make_dig_montage(ch_pos=dict(zip(NAMES, pos_m, strict=True)), coord_frame="head"))
    file = tmp_path / "rec_raw.fif"
    raw.save(file, verbose="error")
    rec = read_raw_file(file)
    assert rec.bad_channels.tolist() == [False, False, False, True, False]
    np.testing.assert_allclose(rec.channel_positions, pos_m * 1000.0, atol=1e-3)
    np.testing.assert_allclose(rec.read(0, 100), raw.get_data(picks=NAMES, stop=100) * 1e6, rtol=1e-4, atol=1e-3)


def test_missing_file_names_it(tmp_path: Path):
    with pytest.raises(RecordingNotFoundError, match="nope.edf"):
        read_raw_file(tmp_path / "nope.edf")
    with pytest.raises(RecordingNotFoundError, match="does not exist"):
        read_bids(tmp_path / "no_root", "01")


def test_missing_extra_names_the_install_command():
    with pytest.raises(MissingDependencyError, match=r"pip install neurocrane\[mne\]"):
        _require("neurocrane_no_such_module")


def _write_bids(tmp_path: Path) -> Path:
    root = tmp_path / "bids"
    raw_edf = tmp_path / "src.edf"
    raw = _raw()
    mne.export.export_raw(raw_edf, raw.copy().pick(NAMES), fmt="edf", verbose="error")
    edf = mne.io.read_raw_edf(raw_edf, verbose="error")
    edf.set_channel_types(dict.fromkeys(NAMES, "seeg"))
    edf.info["line_freq"] = 50.0
    for run in ("01", "02"):
        bp = mne_bids.BIDSPath(subject="01", session="pre", task="rest", run=run, datatype="ieeg", root=root)
        mne_bids.write_raw_bids(edf, bp, overwrite=True, verbose="error")
    folder = root / "sub-01" / "ses-pre" / "ieeg"
    # mark a channel bad in channels.tsv (what a clinician's review writes) ...
    channels = sorted(folder.glob("*run-01_channels.tsv"))[0]
    with open(channels, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        row["status"] = "bad" if row["name"] == "LA3" else "good"
    with open(channels, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    # ... and electrode coordinates in cm (LA1 unknown)
    with open(folder / "sub-01_ses-pre_space-ACPC_electrodes.tsv", "w") as fh:
        fh.write("name\tx\ty\tz\tsize\n")
        for i, name in enumerate(NAMES):
            xyz = "n/a\tn/a\tn/a" if name == "LA1" else f"{i}.5\t{-i}\t2"
            fh.write(f"{name}\t{xyz}\tn/a\n")
    (folder / "sub-01_ses-pre_space-ACPC_coordsystem.json").write_text(
        json.dumps({"iEEGCoordinateSystem": "ACPC", "iEEGCoordinateUnits": "cm"})
    )
    return root


def test_bids_status_and_electrodes(tmp_path: Path):
    root = _write_bids(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mne-bids warns about the hand-made coordinate system
        rec = read_bids(root, "01", session="pre", task="rest", run="01")
        other_run = read_bids(root, "01", session="pre", task="rest", run="02")
    assert (rec.subject_id, rec.session_id) == ("sub-01", "ses-pre_task-rest_run-01")
    assert rec.channel_names == tuple(NAMES)
    assert rec.bad_channels.tolist() == [False, False, True, False, False]
    assert not other_run.bad_channels.any()
    assert np.isnan(rec.channel_positions[0]).all()
    np.testing.assert_allclose(rec.channel_positions[1:], [[15, -10, 20], [25, -20, 20], [35, -30, 20], [45, -40, 20]])
    assert [e.label for e in rec.events] == ["stim_a", "stim_b"]
    with pytest.raises(InputError, match="2 recordings match"):
        read_bids(root, "01", session="pre", task="rest")


def test_convert_bids_writes_an_index(tmp_path: Path):
    root = _write_bids(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = convert_bids(root, tmp_path / "corpus")
    assert isinstance(index, RecordingIndex)
    assert [(s, e) for s, e, _ in index.sessions] == [
        ("sub-01", "ses-pre_task-rest_run-01"),
        ("sub-01", "ses-pre_task-rest_run-02"),
    ]
    rec = open_recording(index.sessions[0][2])
    assert rec.bad_channels.tolist() == [False, False, True, False, False]
    assert rec.n_times == int(8.0 * FS)
