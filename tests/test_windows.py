"""WindowDataset: continuous and event windows, metadata in samples, bad input."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from neurocrane.data.collate import WindowCollator, collate_windows
from neurocrane.data.preprocessing import BasicPreprocessor
from neurocrane.data.recording import Event, Recording, open_recording, write_recording
from neurocrane.data.windows import ConcatWindowDataset, WindowDataset, WindowRequest, label_mapping
from neurocrane.errors import InputDTypeError, InputError

FS = 100.0


def recording(n_times=1000, n_channels=3, **kw):
    x = np.arange(n_channels * n_times, dtype=np.float32).reshape(n_channels, n_times)
    return Recording.from_array(x, FS, [f"A{i}" for i in range(n_channels)], **kw)


def test_continuous_windows_with_stride():
    rec = recording(channel_positions=np.arange(9.0).reshape(3, 3), bad_channels=["A1"], subject_id="sub-07",
                    session_id="ses-02", applied=("fp-rec",))
    ds = WindowDataset(rec, context_length=2.0, stride=0.5)
    assert len(ds) == (1000 - 200) // 50 + 1
    assert ds.starts[:3].tolist() == [0, 50, 100] and ds.starts[-1] == 800
    s = ds[3]
    assert s["neural_data"].dtype == torch.float32 and s["neural_data"].shape == (3, 200)
    np.testing.assert_array_equal(s["neural_data"].numpy(), rec.read(150, 350))
    assert s["start"] == 150 and s["labels"] == -1
    assert (s["subject_id"], s["session_id"]) == ("sub-07", "ses-02")
    assert s["channel_names"] == ("A0", "A1", "A2")
    assert s["channel_mask"].tolist() == [True, False, True]
    assert torch.equal(s["channel_positions"], torch.arange(9.0).reshape(3, 3))
    assert s["applied"] == ("fp-rec",) and s["sampling_rate"] == FS
    assert ds[-1]["start"] == 800
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_default_stride_is_back_to_back_and_span():
    ds = WindowDataset(recording(), context_length=3.0)
    assert ds.starts.tolist() == [0, 300, 600]
    ds = WindowDataset(recording(), context_length=1.0, start=2.0, stop=5.0)
    assert ds.starts.tolist() == [200, 300, 400]


def test_event_windows_with_labels_and_dropped_events(caplog):
    events = [Event(0.1, 0.5, "rest"), Event(3.0, 0.5, "speech"), Event(5.0, 0.5, "rest"),
              Event(9.5, 0.5, "speech"), Event(7.0, 0.5, "music")]
    rec = recording(events=events)
    with caplog.at_level(logging.WARNING, logger="neurocrane.data"):
        ds = WindowDataset.around_events(rec, 1.0, offset=-0.2, label_map=["rest", "speech"])
    # the first (starts at -0.1 s) and the one at 9.5 s (ends at 10.3 s) do not fit; music is not selected
    assert ds.starts.tolist() == [280, 480]
    assert ds.labels.tolist() == [1, 0]
    assert ds.n_dropped_events == 2 and "dropped 2 event(s)" in caplog.text
    assert ds[0]["labels"] == 1
    default = WindowDataset.around_events(rec, 1.0)
    assert default.label_map == {"music": 0, "rest": 1, "speech": 2}
    assert sorted(default.labels.tolist()) == [0, 1, 1, 2] and default.n_dropped_events == 1  # 9.5 s + 1 s > 10 s


def test_rest_windows_fill_event_free_stretches_away_from_every_event():
    # 20 s recording, events at 2-3 s, 8-9 s and 9.5-10 s (any label blocks rest), windows of 1 s
    events = [Event(2.0, 1.0, "stim_a"), Event(8.0, 1.0, "stim_b"), Event(9.5, 0.5, "other")]
    rec = recording(n_times=2000, events=events)
    ds = WindowDataset.around_events(rec, 1.0, label_map={"rest": 0, "stim_a": 1, "stim_b": 1},
                                     rest_label="rest", rest_margin=0.5)
    rest = ds.starts[ds.labels == 0].tolist()
    # stretches [0, 2) -> [0.5, 1.5): centred at 0.5 s; [3, 8) -> [3.5, 7.5): 5.0 s; [10, 20) -> [10.5, 20): 14.75 s
    assert rest == [50, 500, 1475]
    assert ds.labels.tolist() == [0, 1, 0, 1, 0]  # sorted by time, both event labels share class 1
    assert ds.starts.tolist() == sorted(ds.starts.tolist())
    for start in rest:  # every rest window keeps the margin from every event
        for ev in events:
            assert start + 100 <= ev.onset * FS - 50 or start >= (ev.onset + ev.duration) * FS + 50 - 1
    with pytest.raises(InputError, match="rest_label 'quiet' is not in the label map"):
        WindowDataset.around_events(rec, 1.0, label_map=["stim_a"], rest_label="quiet")


def test_event_windows_none_fit_is_an_error():
    rec = recording(events=[Event(9.9, 0.0, "x")])
    with pytest.raises(InputError, match="no event gives a window"):
        WindowDataset.around_events(rec, 1.0)
    with pytest.raises(InputError, match="unique"):
        label_mapping(["a", "a"])


def test_window_longer_than_recording_is_a_clear_error():
    with pytest.raises(InputError, match=r"10\.000 s long.*window of 12 s"):
        WindowDataset(recording(), context_length=12.0)
    with pytest.raises(InputError, match="positive number of seconds"):
        WindowDataset(recording(), context_length=0.0)
    with pytest.raises(InputError, match="stride"):
        WindowDataset(recording(), context_length=1.0, stride=0.0)
    with pytest.raises(InputError, match="shorter than one window"):
        WindowDataset(recording(), context_length=2.0, start=9.0)


def test_int16_recording_reads_scaled_float32_and_raw_int16_tensors_are_refused(tmp_path):
    x = (np.arange(3 * 500).reshape(3, 500) % 200 - 100).astype(np.int16)
    rec = Recording.from_array(x, FS, ["A", "B", "C"], scale=0.5)
    folder = write_recording(tmp_path / "sub-01" / "ses-01", rec, dtype="int16")
    ds = WindowDataset(open_recording(folder), context_length=1.0)
    s = ds[1]
    assert s["neural_data"].dtype == torch.float32
    np.testing.assert_allclose(s["neural_data"].numpy(), x[:, 100:200] * 0.5)
    raw = {"neural_data": torch.from_numpy(x[None]), "channel_mask": torch.ones(1, 3, dtype=torch.bool)}
    with pytest.raises(InputDTypeError, match="scale"):
        BasicPreprocessor()(raw)
    with pytest.raises(InputDTypeError, match="scale"):
        Recording.from_array(x, FS, ["A", "B", "C"])


def test_nan_runs_are_cleaned_and_counted_through_a_dataloader(tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 1000)).astype(np.float32)
    x[1, 120:180] = np.nan  # a 60-sample NaN run in window 1
    x[3, 950] = np.inf
    folder = write_recording(tmp_path / "s", Recording.from_array(x, FS, list("ABCD"), bad_channels=["C"]))
    ds = WindowDataset(open_recording(folder), context_length=1.0)
    pre = BasicPreprocessor()
    batches = list(DataLoader(ds, batch_size=4, collate_fn=WindowCollator(pre)))
    assert sum(b["n_replaced"] for b in batches) == 61 and pre.n_replaced == 61
    for b in batches:
        assert torch.isfinite(b["neural_data"]).all()
        assert (b["neural_data"][:, 2] == 0).all()  # bad channel masked out
    np.testing.assert_array_equal(batches[0]["neural_data"][0, 0].numpy(), x[0, :100])


def test_dataset_pickles_without_copying_the_memory_map(tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 20000)).astype(np.float32)
    folder = write_recording(tmp_path / "s", Recording.from_array(x, FS, ["A", "B"]))
    ds = WindowDataset(open_recording(folder), context_length=1.0)
    ds[0]  # opens the memory map
    blob = pickle.dumps(ds)
    assert len(blob) < x.nbytes / 4
    again = pickle.loads(blob)
    assert torch.equal(again[5]["neural_data"], ds[5]["neural_data"])


def test_workers_give_the_same_batches_as_the_main_process(tmp_path):
    x = np.random.default_rng(2).standard_normal((3, 3000)).astype(np.float32)
    folder = write_recording(tmp_path / "s", Recording.from_array(x, FS, ["A", "B", "C"]))
    ds = WindowDataset(open_recording(folder), context_length=0.5)
    main = [b["neural_data"] for b in DataLoader(ds, batch_size=8, collate_fn=collate_windows)]
    workers = [b["neural_data"] for b in DataLoader(ds, batch_size=8, collate_fn=collate_windows, num_workers=2)]
    assert len(main) == len(workers) and all(torch.equal(a, b) for a, b in zip(main, workers, strict=True))


def _sessions():
    a = Recording.from_array(np.arange(3 * 500, dtype=np.float32).reshape(3, 500), FS, ["A0", "A1", "A2"],
                             session_id="ses-a", bad_channels=["A1"], channel_positions=np.arange(9.0).reshape(3, 3))
    b = Recording.from_array(-np.arange(2 * 400, dtype=np.float32).reshape(2, 400), FS, ["A2", "B0"], session_id="ses-b")
    return WindowDataset(a, context_length=1.0), WindowDataset(b, context_length=1.0)


def test_getitems_is_a_lazy_sequence_of_the_same_samples():
    ds, _ = _sessions()
    req = ds.__getitems__([3, -1, 0])
    assert isinstance(req, WindowRequest) and len(req) == 3
    assert [s["start"] for s in req] == [300, 400, 0]  # -1 counts from the end
    assert torch.equal(req[1]["neural_data"], ds[4]["neural_data"])
    with pytest.raises(IndexError, match="out of range"):
        ds.__getitems__([0, 5])


def test_concat_window_dataset_routes_indices_to_sessions():
    a, b = _sessions()
    both = ConcatWindowDataset([a, b])
    req = both.__getitems__([len(a), 1, len(both) - 1])
    assert req.dataset_of.tolist() == [1, 0, 1] and req.positions.tolist() == [0, 1, len(b) - 1]
    assert [(d.session_id, rows.tolist()) for d, rows in req.groups()] == [("ses-b", [0, 2]), ("ses-a", [1])]
    with pytest.raises(IndexError):
        both.__getitems__([len(both)])


def test_read_into_copies_time_major_rows_and_columns(tmp_path):
    x = np.random.default_rng(3).integers(-500, 500, (3, 300)).astype(np.int16)
    rec = Recording.from_array(x, FS, ["A", "B", "C"], scale=[0.5, 2.0, 1.0])
    folder = write_recording(tmp_path / "s", rec, dtype="int16")
    ds = WindowDataset(open_recording(folder), context_length=1.0)
    out = np.full((2, 100, 5), 7.0, dtype=np.float32)
    ds.read_into([2, 0], out, rows=[1, 0], columns=np.array([4, 0, 2]))
    expected = x.T.astype(np.float32) * np.array([0.5, 2.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(out[1][:, [4, 0, 2]], expected[200:300])
    np.testing.assert_allclose(out[0][:, [4, 0, 2]], expected[0:100])
    assert (out[:, :, [1, 3]] == 7.0).all()  # other columns untouched
    ds.read_into([1], out, columns=slice(1, 4))
    np.testing.assert_allclose(out[0][:, 1:4], expected[100:200])


def test_batched_collate_matches_per_sample_collate_across_sessions():
    a, b = _sessions()
    a.labels[:] = [4, 5, 6, 7, 8]
    both = ConcatWindowDataset([a, b])
    idx = [0, len(a) + 1, 4, len(a)]
    fast = collate_windows(both.__getitems__(idx))
    slow = collate_windows([both[i] for i in idx])
    assert fast["channel_names"] == slow["channel_names"] == ("A0", "A1", "A2", "B0")
    assert torch.equal(fast["neural_data"], slow["neural_data"])
    for key in ("channel_mask", "labels", "start"):
        assert torch.equal(fast[key], slow[key]), key
    assert torch.equal(fast["channel_positions"], slow["channel_positions"])
    assert fast["session_id"] == slow["session_id"] == ["ses-a", "ses-b", "ses-a", "ses-b"]
    assert fast["labels"].tolist() == [4, -1, 8, -1] and fast["sampling_rate"] == FS
    # the (B, C, T) batch is a view of one time-major (B, T, C) block
    assert not fast["neural_data"].is_contiguous() and fast["neural_data"].transpose(1, 2).is_contiguous()


def test_batched_collate_refuses_sessions_that_cannot_share_a_batch():
    a, _ = _sessions()
    slow = WindowDataset(Recording.from_array(np.zeros((3, 500), np.float32), 50.0, ["A0", "A1", "A2"]), context_length=2.0)
    with pytest.raises(InputError, match="sampling rate"):
        collate_windows(ConcatWindowDataset([a, slow]).__getitems__([0, len(a)]))
    other = WindowDataset(Recording.from_array(np.zeros((3, 500), np.float32), FS, ["A0", "A1", "A2"],
                                               applied=("fp",)), context_length=1.0)
    with pytest.raises(InputError, match="applied pipelines"):
        collate_windows(ConcatWindowDataset([a, other]).__getitems__([0, len(a)]))
