"""Recording, the on-disk session format, and RecordingIndex."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocrane.data import (
    Event,
    Recording,
    RecordingError,
    RecordingIndex,
    RecordingNotFoundError,
    open_recording,
    write_recording,
)
from neurocrane.data.recording import SIDECAR_NAME, SIGNALS_NAME
from neurocrane.errors import InputDTypeError, InputError

NAMES = ["LA1", "LA2", "LA3", "RH1"]


def _rec(n_times: int = 1000, **kwargs) -> Recording:
    x = np.arange(4 * n_times, dtype=np.float64).reshape(4, n_times) / 7.0
    kwargs.setdefault("events", [Event(0.5, 0.25, "stim"), Event(0.1, 0.0, "click")])
    return Recording.from_array(x, 500.0, NAMES, **kwargs)


def _sidecar(folder: Path) -> dict:
    return json.loads((folder / SIDECAR_NAME).read_text())


def _edit_sidecar(folder: Path, **changes) -> None:
    meta = _sidecar(folder)
    meta.update(changes)
    (folder / SIDECAR_NAME).write_text(json.dumps(meta))


def test_from_array_reads_and_metadata():
    rec = _rec(bad_channels=["LA2"], channel_positions=np.arange(12.0).reshape(4, 3), subject_id="sub-03")
    assert (rec.n_channels, rec.n_times, rec.duration) == (4, 1000, 2.0)
    assert rec.name == "sub-03/ses-01"
    expected = (np.arange(4000.0).reshape(4, 1000) / 7.0).astype(np.float32)
    out = rec.read(10, 20)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, expected[:, 10:20])
    np.testing.assert_array_equal(rec.read(10, 20, channels=[3, 1]), expected[[3, 1], 10:20])
    np.testing.assert_array_equal(rec.read_seconds(0.5, 0.1), expected[:, 250:300])
    assert rec.bad_channels.tolist() == [False, True, False, False]
    assert [e.label for e in rec.events] == ["click", "stim"]  # sorted by onset
    assert rec.channel_index(["RH1", "LA1"]) == [3, 0]
    # a read is a copy: changing it does not change the recording
    out[:] = 0
    assert rec.read(10, 11)[0, 0] == expected[0, 10]


def test_from_array_accepts_torch_and_one_channel():
    rec = Recording.from_array(torch.ones(1, 50, dtype=torch.float64), 100.0, ["A"])
    block = rec.read(0, 50)
    assert block.shape == (1, 50) and block.dtype == np.float32
    block[0, 0] = 5.0  # one channel is also returned as a copy, not a view of the storage
    assert rec.read(0, 1)[0, 0] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channel_names": ["a", "b"]}, "2 channel names for 4 channels"),
        ({"channel_names": ["a", "a", "b", "c"]}, "repeated"),
        ({"sampling_rate": 0.0}, "positive finite"),
        ({"channel_positions": np.zeros((4, 2))}, r"shape \(4, 3\)"),
        ({"bad_channels": [True, False]}, "4 booleans"),
        ({"bad_channels": ["ZZ9"]}, "not channels"),
        ({"events": [Event(1.9, 0.5, "late")]}, "outside the recording"),
        ({"events": [Event(-0.1, 0.0, "early")]}, "outside the recording"),
        ({"subject_id": "sub/01"}, "subject_id"),
    ],
)
def test_from_array_rejects_bad_metadata(kwargs, match):
    args = {"signals": np.zeros((4, 1000)), "sampling_rate": 500.0, "channel_names": NAMES, **kwargs}
    with pytest.raises(InputError, match=match):
        Recording.from_array(**args)


def test_event_validation():
    with pytest.raises(InputError, match="duration"):
        Event(1.0, -1.0, "x")
    with pytest.raises(InputError, match="label"):
        Event(1.0, 1.0, "")


def test_int16_needs_a_scale_and_is_scaled_on_read():
    ints = np.array([[1, -2, 3], [100, 0, -100]], dtype=np.int16)
    with pytest.raises(InputDTypeError, match="scale"):
        Recording.from_array(ints, 10.0, ["a", "b"])
    with pytest.raises(InputDTypeError, match="int16"):
        Recording.from_array(ints.astype(np.int32), 10.0, ["a", "b"], scale=0.5)
    rec = Recording.from_array(ints, 10.0, ["a", "b"], scale=[0.5, 0.25])
    np.testing.assert_allclose(rec.read(0, 3), [[0.5, -1.0, 1.5], [25.0, 0.0, -25.0]])
    assert rec.storage_dtype == "int16"


def test_read_bounds_name_the_problem():
    rec = _rec()
    with pytest.raises(InputError, match=r"cannot read samples \[990, 1010\); the recording has 1000"):
        rec.read(990, 1010)
    with pytest.raises(InputError, match="longer than the recording"):
        rec.read(0, 2000)
    with pytest.raises(InputError, match="cannot read"):
        rec.read(5, 5)
    with pytest.raises(InputError, match="integer sample index"):
        rec.read(0.5, 10)
    with pytest.raises(InputError, match=r"\[7\] are out of range"):
        rec.read(0, 10, channels=[0, 7])
    with pytest.raises(InputError, match="at least one sample"):
        rec.read_seconds(0.0, 0.0001)


def test_write_open_round_trip_is_lazy_and_complete(tmp_path: Path):
    rec = _rec(
        bad_channels=["LA3"],
        channel_positions=[[1.0, 2.0, 3.0], [None, None, None], [4.0, 5.0, 6.0], [7.5, 8.0, -9.0]],
        subject_id="sub-02",
        session_id="ses-04",
        applied=("abc123",),
        info={"unit": "uV", "line_freq": 50.0},
    )
    folder = write_recording(tmp_path / "corpus" / "s", rec)
    assert sorted(p.name for p in folder.iterdir()) == [SIDECAR_NAME, SIGNALS_NAME]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    back = open_recording(folder)
    assert back._mmap is None  # nothing read yet
    np.testing.assert_array_equal(back.read(0, 1000), rec.read(0, 1000))
    assert back.channel_names == rec.channel_names and back.sampling_rate == 500.0
    np.testing.assert_array_equal(back.bad_channels, rec.bad_channels)
    np.testing.assert_array_equal(back.channel_positions, rec.channel_positions)  # NaN survives as null
    assert back.events == rec.events and back.applied == ("abc123",) and back.info == rec.info
    assert (back.subject_id, back.session_id, back.path) == ("sub-02", "ses-04", folder)
    # time-major: the samples of all channels at one time point are adjacent on disk
    stored = np.load(folder / SIGNALS_NAME, mmap_mode="r")
    assert stored.shape == (1000, 4) and stored.flags["C_CONTIGUOUS"]
    # the sidecar is plain JSON naming what it describes
    meta = _sidecar(folder)
    assert (meta["format"], meta["version"], meta["dtype"], meta["shape"]) == ("neurocrane.recording", 1, "float32", [1000, 4])


def test_write_array_with_metadata_and_overrides(tmp_path: Path):
    folder = write_recording(tmp_path / "a", np.ones((2, 30)), sampling_rate=10.0, channel_names=["x", "y"])
    assert open_recording(folder).channel_names == ("x", "y")
    folder = write_recording(tmp_path / "b", _rec(), session_id="ses-09", events=[Event(1.0, 0.5, "new")])
    back = open_recording(folder)
    assert back.session_id == "ses-09" and [e.label for e in back.events] == ["new"]
    with pytest.raises(InputError, match="unknown metadata"):
        write_recording(tmp_path / "c", _rec(), colour="blue")
    with pytest.raises(InputError, match="sampling_rate"):
        write_recording(tmp_path / "d", np.ones((2, 30)))


def test_write_refuses_to_clobber_unless_asked(tmp_path: Path):
    folder = write_recording(tmp_path / "s", _rec())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_recording(folder, _rec())
    write_recording(folder, _rec(session_id="ses-02"), overwrite=True)
    assert open_recording(folder).session_id == "ses-02"
    other = tmp_path / "not_a_recording"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a recording folder"):
        write_recording(other, _rec(), overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_failed_write_leaves_no_trace(tmp_path: Path):
    x = np.zeros((2, 100), dtype=np.float32)
    x[1, 50] = np.nan
    rec = Recording.from_array(x, 100.0, ["a", "b"])
    with pytest.raises(InputError, match="int16 cannot store"):
        write_recording(tmp_path / "s", rec, dtype="int16")
    assert list(tmp_path.iterdir()) == []


def test_int16_storage_round_trip(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.normal(0, [[10.0], [200.0]], size=(2, 2000))
    folder = write_recording(tmp_path / "s", Recording.from_array(x, 250.0, ["a", "b"]), dtype="int16")
    back = open_recording(folder)
    assert back.storage_dtype == "int16" and (folder / SIGNALS_NAME).stat().st_size < 2 * 2000 * 2 + 200
    # per-channel scale: the error is at most half a quantization step of each channel
    step = np.abs(x).max(axis=1) / 32767
    assert (np.abs(back.read(0, 2000) - x).max(axis=1) <= step * 0.5 + 1e-6).all()
    # an int16 recording is copied as stored, without requantizing
    again = open_recording(write_recording(tmp_path / "t", back, dtype="int16"))
    np.testing.assert_array_equal(again.read_raw(0, 2000), back.read_raw(0, 2000))
    np.testing.assert_array_equal(again.scale, back.scale)


def test_pickle_reopens_the_memory_map(tmp_path: Path):
    back = open_recording(write_recording(tmp_path / "s", _rec()))
    back.read(0, 10)
    assert back._mmap is not None
    blob = pickle.dumps(back)
    assert len(blob) < 4000 * 4  # the signals are not in the pickle
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.read(100, 200), back.read(100, 200))


def test_missing_files_are_named(tmp_path: Path):
    with pytest.raises(RecordingNotFoundError, match="does not exist"):
        open_recording(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordingNotFoundError, match=r"empty/recording.json"):
        open_recording(tmp_path / "empty")
    folder = write_recording(tmp_path / "s", _rec())
    (folder / SIGNALS_NAME).unlink()
    with pytest.raises(RecordingNotFoundError, match="signals.npy"):
        open_recording(folder)


def test_truncated_signals_fail_at_open_naming_the_file(tmp_path: Path):
    folder = write_recording(tmp_path / "s", _rec())
    file = folder / SIGNALS_NAME
    size = file.stat().st_size
    with open(file, "r+b") as fh:
        fh.truncate(size - 100)
    with pytest.raises(RecordingError, match=r"signals.npy.*truncated"):
        open_recording(folder)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"channel_names": NAMES[:3]}, "3 channel names for 4 channels"),
        ({"shape": [999, 4]}, "do not belong together"),
        ({"dtype": "int16", "scale": [1.0] * 4}, "do not belong together"),
        ({"bad_channels": [False]}, "4 booleans"),
        ({"format": "something.else"}, "not a neurocrane recording sidecar"),
        ({"version": 99}, "format version 99"),
        ({"events": [{"onset": 5.0, "duration": 1.0, "label": "late"}]}, "outside the recording"),
    ],
)
def test_mismatched_sidecar_fails_naming_the_file(tmp_path: Path, changes, match):
    folder = write_recording(tmp_path / "s", _rec())
    _edit_sidecar(folder, **changes)
    with pytest.raises(RecordingError, match=match) as info:
        open_recording(folder)
    assert str(folder) in str(info.value)


def test_damaged_sidecar_json(tmp_path: Path):
    folder = write_recording(tmp_path / "s", _rec())
    (folder / SIDECAR_NAME).write_text("{not json")
    with pytest.raises(RecordingError, match="not valid JSON"):
        open_recording(folder)
    (folder / SIDECAR_NAME).write_text(json.dumps({"format": "neurocrane.recording", "version": 1}))
    with pytest.raises(RecordingError, match="misses required keys"):
        open_recording(folder)


def test_raw_dat_signals_are_supported(tmp_path: Path):
    folder = write_recording(tmp_path / "s", _rec())
    data = np.load(folder / SIGNALS_NAME)
    data.tofile(folder / "signals.dat")
    (folder / SIGNALS_NAME).unlink()
    _edit_sidecar(folder, data_file="signals.dat")
    np.testing.assert_array_equal(open_recording(folder).read(0, 1000), _rec().read(0, 1000))


def test_index_lists_sessions_and_skips_hidden_folders(tmp_path: Path):
    for subject, session in [("sub-02", "ses-01"), ("sub-01", "ses-02"), ("sub-01", "ses-01")]:
        write_recording(tmp_path / subject / session, _rec(subject_id=subject, session_id=session))
    # a cache entry inside a session folder is not a session of its own
    write_recording(tmp_path / "sub-01" / "ses-01" / ".crane_cache" / "abc", _rec(subject_id="sub-01"))
    index = RecordingIndex(tmp_path)
    assert len(index) == 3
    assert [(s, e) for s, e, _ in index.sessions] == [("sub-01", "ses-01"), ("sub-01", "ses-02"), ("sub-02", "ses-01")]
    assert index.subjects == ("sub-01", "sub-02")
    assert index.open("sub-02", "ses-01").path == tmp_path / "sub-02" / "ses-01"
    assert [r.name for r in index] == ["sub-01/ses-01", "sub-01/ses-02", "sub-02/ses-01"]
    assert index[1].session_id == "ses-02"
    with pytest.raises(RecordingNotFoundError, match="no session sub-09/ses-01"):
        index.open("sub-09", "ses-01")


def test_index_errors(tmp_path: Path):
    with pytest.raises(RecordingNotFoundError, match="does not exist"):
        RecordingIndex(tmp_path / "missing")
    with pytest.raises(RecordingNotFoundError, match="no recordings"):
        RecordingIndex(tmp_path)
    write_recording(tmp_path / "a", _rec())
    write_recording(tmp_path / "b", _rec())
    with pytest.raises(RecordingError, match="two recordings claim subject 'sub-01' session 'ses-01'"):
        RecordingIndex(tmp_path)
