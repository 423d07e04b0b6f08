"""Recording-level preprocessing: the recording part runs once per recording, is cached by
fingerprint, and windows cut afterwards only need the window part."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from neurocrane.batch import NeuralBatch
from neurocrane.data import Recording, RecordingIndex, make_synthetic_recording, open_recording, write_recording
from neurocrane.data import recording_cache as rc
from neurocrane.data.recording_cache import (
    CACHE_FOLDER,
    clear_recording_cache,
    preprocess_recording,
    preprocess_recordings,
    recording_cache_path,
)
from neurocrane.errors import PipelineError
from neurocrane.pipeline import Pipeline, Transform
from neurocrane.preprocessing import BipolarReference, CommonAverageReference, Highpass, Notch, Resample, ZScore


class MovingAverage(Transform):
    """A causal FIR (boxcar) filter: exact under chunking once the pad covers the kernel."""

    op: ClassVar[str] = "tests.recording_cache.moving_average"
    wants_continuous: ClassVar[bool] = True
    seconds: float = 0.05

    def min_duration(self, spec):
        return self.seconds

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        n = max(1, round(self.seconds * batch.sampling_rate))
        x = batch.signals
        kernel = torch.full((1, 1, n), 1.0 / n, dtype=x.dtype)
        flat = torch.nn.functional.pad(x.reshape(-1, 1, x.shape[-1]), (n - 1, 0))
        y = torch.nn.functional.conv1d(flat, kernel).reshape(x.shape)
        return batch.replace(signals=y)


def _pipeline(line_freq: float = 60.0) -> Pipeline:
    return Pipeline(
        [
            CommonAverageReference(),
            Highpass(cutoff=0.5),
            Notch(freqs=(line_freq, 2 * line_freq, 3 * line_freq)),
            ZScore(),
        ]
    )


def _rec(tmp_path: Path | None = None, **kwargs) -> Recording:
    kwargs = {"duration_s": 30.0, "n_shafts": 2, "contacts_per_shaft": 4, "nan_gap_probability": 0.0, **kwargs}
    rec = make_synthetic_recording(**kwargs)
    if tmp_path is None:
        return rec
    return open_recording(write_recording(tmp_path / rec.subject_id / rec.session_id, rec))


def _whole(rec: Recording, part: Pipeline) -> np.ndarray:
    """The recording part run on the whole recording at once, as the reference."""
    mask = None if not rec.bad_channels.any() else torch.as_tensor(~rec.bad_channels)[None]
    batch = NeuralBatch(
        torch.from_numpy(rec.read(0, rec.n_times))[None],
        sampling_rate=rec.sampling_rate,
        channel_names=rec.channel_names,
        channel_positions=torch.tensor(rec.channel_positions, dtype=torch.float32),
        channel_mask=mask,
    )
    return part(batch).signals[0].numpy()


def test_result_is_the_recording_part_and_windows_resume_after_it(tmp_path: Path):
    rec = _rec(tmp_path)
    pipe = _pipeline()
    part, window_part = pipe.split()
    assert [type(s).__name__ for s in window_part] == ["ZScore"]
    out = preprocess_recording(rec, pipe)
    assert out.applied == (part.fingerprint,)
    assert out.path == rec.path / CACHE_FOLDER / part.fingerprint
    assert (out.channel_names, out.sampling_rate, out.events) == (rec.channel_names, rec.sampling_rate, rec.events)
    np.testing.assert_array_equal(out.bad_channels, rec.bad_channels)
    np.testing.assert_allclose(out.read(0, out.n_times), _whole(rec, part), atol=1e-4)
    # a window cut from the result, stamped as the data layer does, only gets the window part
    window = torch.from_numpy(out.read(1024, 2048))[None]
    stamped = NeuralBatch(window, sampling_rate=512.0, channel_names=out.channel_names, applied=out.applied)
    np.testing.assert_allclose(pipe(stamped).signals, window_part(stamped).signals, atol=1e-6)
    # unstamped, the whole pipeline would filter the (already filtered) window again
    plain = stamped.replace(applied=())
    assert not torch.allclose(pipe(plain).signals, window_part(plain).signals, atol=1e-3)


def test_cache_hit_reuses_the_entry(tmp_path: Path, monkeypatch):
    rec = _rec(tmp_path)
    first = preprocess_recording(rec, _pipeline())
    mtime = (first.path / "signals.npy").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("recomputed despite a valid cache entry")

    monkeypatch.setattr(rc._ChunkRunner, "run", fail)
    again = preprocess_recording(open_recording(rec.path), _pipeline())
    assert again.path == first.path and (again.path / "signals.npy").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.read(0, 100), first.read(0, 100))
    # the cache is not a session of the corpus
    assert len(RecordingIndex(tmp_path)) == 1


def test_changed_pipeline_or_source_never_hits_a_stale_entry(tmp_path: Path):
    rec = _rec(tmp_path)
    a = preprocess_recording(rec, _pipeline(60.0))
    b = preprocess_recording(rec, _pipeline(50.0))
    assert a.path != b.path and a.applied != b.applied
    assert not np.allclose(a.read(0, 2000), b.read(0, 2000))
    # the source changes (here: one more channel flagged bad) -> the entry is recomputed
    before = a.read(0, 2000)
    meta = rec.metadata()
    bad = list(rec.bad_channels)
    bad[0] = True
    write_recording(rec.path, rec, overwrite=True, bad_channels=bad)
    changed = open_recording(rec.path)
    c = preprocess_recording(changed, _pipeline(60.0))
    assert c.path == a.path and c.bad_channels[0] and not meta["bad_channels"][0]
    assert not np.allclose(c.read(0, 2000), before)  # CAR now leaves channel 0 out
    np.testing.assert_allclose(c.read(0, c.n_times), _whole(changed, _pipeline(60.0).split()[0]), atol=1e-4)


def test_stale_source_stamp_triggers_recompute(tmp_path: Path):
    rec = _rec(tmp_path)
    entry = preprocess_recording(rec, _pipeline()).path
    # same folder, new signals written in place (e.g. copied over by hand)
    signals = np.load(rec.path / "signals.npy")
    np.save(rec.path / "signals.npy", signals * 2)
    again = preprocess_recording(open_recording(rec.path), _pipeline())
    assert again.path == entry
    assert again.info["recording_preprocessing"]["source"]["signals_mtime_ns"] == (
        (rec.path / "signals.npy").stat().st_mtime_ns
    )


def test_in_memory_recording_and_cache_dir(tmp_path: Path):
    rec = _rec()
    out = preprocess_recording(rec, _pipeline())
    assert out.path is None and out.applied == (_pipeline().split()[0].fingerprint,)
    np.testing.assert_allclose(out.read(0, out.n_times), _whole(rec, _pipeline().split()[0]), atol=1e-4)
    cached = preprocess_recording(rec, _pipeline(), cache_dir=tmp_path / "cache")
    assert cached.path is not None and cached.path.is_relative_to(tmp_path / "cache")
    assert cached.path == recording_cache_path(rec, _pipeline(), cache_dir=tmp_path / "cache")
    assert preprocess_recording(rec, _pipeline(), cache_dir=tmp_path / "cache").path == cached.path
    # a different recording with the same ids gets its own entry
    other = _rec(seed=9)
    assert recording_cache_path(other, _pipeline(), cache_dir=tmp_path / "cache") != cached.path
    # cache=False never writes
    on_disk = _rec(tmp_path / "disk")
    assert preprocess_recording(on_disk, _pipeline(), cache=False).path is None
    assert not (on_disk.path / CACHE_FOLDER).exists()


def test_chunked_fir_is_exact():
    rec = _rec(duration_s=20.0, n_bad_channels=0)
    pipe = Pipeline([CommonAverageReference(), MovingAverage(seconds=0.05)])
    whole = preprocess_recording(rec, pipe, cache=False, chunk_s=1000.0)
    chunked = preprocess_recording(rec, pipe, cache=False, chunk_s=3.0, pad_s=0.1)
    assert chunked.info["recording_preprocessing"]["chunk_s"] == 3.0
    np.testing.assert_allclose(chunked.read(0, rec.n_times), whole.read(0, rec.n_times), atol=1e-4)
    # a pad shorter than the kernel is visibly wrong at the chunk edges: the pad matters
    short = preprocess_recording(rec, pipe, cache=False, chunk_s=3.0, pad_s=0.0)
    assert np.abs(short.read(0, rec.n_times) - whole.read(0, rec.n_times)).max() > 1.0


def test_chunked_iir_matches_whole_recording_with_the_default_pad():
    rec = _rec(duration_s=60.0)
    pipe = _pipeline()
    whole = preprocess_recording(rec, pipe, cache=False, chunk_s=1000.0).read(0, rec.n_times)
    out = preprocess_recording(rec, pipe, cache=False, chunk_s=15.0)
    assert out.info["recording_preprocessing"]["pad_s"] >= 10.0
    chunked = out.read(0, rec.n_times)
    interior = slice(2 * 512, rec.n_times - 2 * 512)  # both versions guess at the recording's own edges
    err = np.abs(chunked[:, interior] - whole[:, interior]).max()
    assert err < 1e-3 * whole.std()


def test_resampling_in_chunks():
    rec = _rec(duration_s=40.0, n_bad_channels=0)
    pipe = Pipeline([Highpass(cutoff=1.0), Resample(new_rate=256.0), ZScore()])
    whole = preprocess_recording(rec, pipe, cache=False, chunk_s=1000.0)
    chunked = preprocess_recording(rec, pipe, cache=False, chunk_s=10.0)
    assert chunked.sampling_rate == 256.0 and chunked.n_times == rec.n_times // 2 == whole.n_times
    interior = slice(512, chunked.n_times - 512)
    a, b = chunked.read(0, chunked.n_times)[:, interior], whole.read(0, whole.n_times)[:, interior]
    assert np.abs(a - b).max() < 1e-3 * b.std()
    assert chunked.events == rec.events


def test_channel_changing_part_updates_names_positions_and_bad_flags(tmp_path: Path):
    rec = _rec(tmp_path, n_bad_channels=1)
    bad_name = rec.channel_names[int(np.flatnonzero(rec.bad_channels)[0])]
    pipe = Pipeline([BipolarReference(pairs="shaft"), Highpass(cutoff=0.5), ZScore()])
    out = preprocess_recording(rec, pipe)
    shafts = sorted({n[:2] for n in rec.channel_names})
    expected = tuple(f"{s}{k}-{s}{k + 1}" for s in shafts for k in range(1, 4))
    assert out.channel_names == expected
    assert [n for n, b in zip(out.channel_names, out.bad_channels, strict=True) if b] == [
        n for n in expected if bad_name in n.split("-")
    ]
    i, j = rec.channel_index(expected[0].split("-"))
    np.testing.assert_allclose(out.channel_positions[0], (rec.channel_positions[i] + rec.channel_positions[j]) / 2,
                               atol=1e-4)
    np.testing.assert_allclose(out.read(0, out.n_times), _whole(rec, pipe.split()[0]), atol=1e-4)


def test_nan_gaps_are_bridged_restored_and_counted():
    rec = _rec(duration_s=30.0, nan_gap_probability=1.0, n_bad_channels=0, seed=1)
    [(g0, g1)] = rec.info["nan_gaps"]
    x = rec.read(0, rec.n_times)
    x[3] = np.nan  # and one channel with no data at all
    broken = Recording.from_array(x, rec.sampling_rate, rec.channel_names, events=rec.events,
                                  channel_positions=rec.channel_positions)
    with pytest.warns(UserWarning, match="NaN/Inf samples were interpolated"):
        out = preprocess_recording(broken, _pipeline())
    y = out.read(0, out.n_times)
    a, b = round(g0 * 512), round(g1 * 512)
    assert np.isnan(y[:, a:b]).all()
    others = np.delete(np.arange(out.n_channels), 3)
    assert np.isfinite(y[others][:, :a]).all() and np.isfinite(y[others][:, b:]).all()  # NaN did not spread
    assert np.isnan(y[3]).all()  # the empty channel stays empty ...
    assert out.bad_channels[3] and out.bad_channels.sum() == 1  # ... and is flagged bad
    cleanup = out.info["recording_preprocessing"]["cleanup"]
    assert cleanup["nonfinite_channels"] == [rec.channel_names[3]]
    assert cleanup["gap_samples"] == b - a
    assert cleanup["nonfinite_samples"] == rec.n_times + (b - a) * (rec.n_channels - 1)
    # the gap did not leak into the filtered signal of the good channels next to it
    clean = preprocess_recording(_rec(duration_s=30.0, nan_gap_probability=0.0, n_bad_channels=0, seed=1),
                                 _pipeline())
    assert clean.n_times == out.n_times


def test_nothing_to_do_and_refusals(tmp_path: Path):
    rec = _rec()
    only_window = Pipeline([CommonAverageReference(), ZScore()])
    assert only_window.split()[0] is None
    assert preprocess_recording(rec, only_window) is rec
    out = preprocess_recording(rec, _pipeline())
    assert preprocess_recording(out, _pipeline()) is out  # already applied: nothing to do
    with pytest.raises(PipelineError, match="already preprocessed by pipeline part"):
        preprocess_recording(out, _pipeline(50.0))
    with pytest.raises(PipelineError, match="per-window statistics"):
        preprocess_recording(rec, Pipeline([ZScore(), Highpass(cutoff=1.0)]))
    with pytest.raises(PipelineError, match="time-domain"):
        from neurocrane.preprocessing import Spectrogram

        preprocess_recording(rec, Pipeline([Highpass(cutoff=1.0), Spectrogram()]), split_at=2)


def test_many_recordings_and_clearing_the_cache(tmp_path: Path):
    for session in (0, 1):
        _rec(tmp_path, session=session)
    index = RecordingIndex(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN here: no clean-up warning
        outs = preprocess_recordings(index, _pipeline())
    assert [o.session_id for o in outs] == ["ses-01", "ses-02"]
    assert all(o.path.parent.name == CACHE_FOLDER for o in outs)
    assert clear_recording_cache(tmp_path) == 2
    assert not list(tmp_path.rglob(CACHE_FOLDER))
