"""The synthetic SEEG corpus: structure, determinism, artefacts, and a learnable effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from neurocrane.data import RecordingIndex, make_synthetic_corpus, make_synthetic_recording, write_recording
from neurocrane.data.synthetic import synthetic_montage
from neurocrane.errors import InputError


def test_montage_is_shafts_of_contacts_along_a_line():
    names, pos, shafts = synthetic_montage(2, seed=4, n_shafts=3, contacts_per_shaft=6)
    assert len(names) == 18 and pos.shape == (18, 3) and len(shafts) == 3
    for first, count in shafts:
        prefix = names[first][:2]
        assert names[first : first + count] == tuple(f"{prefix}{k}" for k in range(1, count + 1))
        steps = np.diff(pos[first : first + count], axis=0)
        np.testing.assert_allclose(np.linalg.norm(steps, axis=1), 3.5, atol=0.2)  # 3.5 mm spacing
        directions = steps / np.linalg.norm(steps, axis=1, keepdims=True)
        assert (directions @ directions[0] > 0.99).all()  # collinear
        assert np.sign(pos[first, 0]) == (-1 if prefix[0] == "L" else 1)  # left shafts at x < 0
    assert synthetic_montage(2, seed=4, n_shafts=3, contacts_per_shaft=6)[0] == names
    assert synthetic_montage(3, seed=4, n_shafts=3, contacts_per_shaft=6)[0] != names


def test_deterministic_by_seed_and_montage_fixed_per_subject():
    a = make_synthetic_recording(duration_s=8.0, seed=3)
    b = make_synthetic_recording(duration_s=8.0, seed=3)
    c = make_synthetic_recording(duration_s=8.0, seed=4)
    other_session = make_synthetic_recording(duration_s=8.0, seed=3, session=1)
    np.testing.assert_array_equal(a.read(0, a.n_times), b.read(0, b.n_times))
    assert a.events == b.events
    assert not np.allclose(np.nan_to_num(a.read(0, 100)), np.nan_to_num(c.read(0, 100)))
    assert other_session.channel_names == a.channel_names
    np.testing.assert_array_equal(other_session.channel_positions, a.channel_positions)
    assert other_session.info["responsive_channels"] == a.info["responsive_channels"]
    assert not np.allclose(np.nan_to_num(other_session.read(0, 100)), np.nan_to_num(a.read(0, 100)))


def _line_power_ratio(x: np.ndarray, fs: float, f0: float) -> float:
    f, p = scipy.signal.welch(x, fs=fs, nperseg=int(fs))
    at = np.argmin(np.abs(f - f0))
    around = (np.abs(f - f0) > 3) & (np.abs(f - f0) < 8)
    return float(p[..., at].mean() / p[..., around].mean())


@pytest.mark.parametrize("line_freq", [50.0, 60.0])
def test_line_noise_and_harmonics(line_freq):
    rec = make_synthetic_recording(duration_s=8.0, line_freq=line_freq, nan_gap_probability=0.0, n_bad_channels=0)
    x = rec.read(0, rec.n_times)
    for harmonic in (1, 2, 3):
        assert _line_power_ratio(x, rec.sampling_rate, harmonic * line_freq) > 100
    other = 60.0 if line_freq == 50.0 else 50.0
    assert _line_power_ratio(x, rec.sampling_rate, other) < 3
    assert rec.info["line_freq"] == line_freq and rec.info["unit"] == "uV"


def test_background_is_1_over_f_and_correlated_along_shafts():
    rec = make_synthetic_recording(duration_s=20.0, nan_gap_probability=0.0, n_bad_channels=0, line_noise_uv=0.0)
    x = rec.read(0, rec.n_times).astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    f, p = scipy.signal.welch(x, fs=rec.sampling_rate, nperseg=512)
    low, high = p[:, (f > 2) & (f < 4)].mean(), p[:, (f > 30) & (f < 45)].mean()
    assert low > 20 * high  # power falls with frequency
    names = rec.channel_names
    corr = np.corrcoef(x)
    same_shaft = [corr[i, i + 1] for i in range(len(names) - 1) if names[i][:2] == names[i + 1][:2]]
    across = [corr[i, j] for i in range(len(names)) for j in range(len(names)) if names[i][:2] != names[j][:2]]
    assert np.mean(same_shaft) > np.mean(across) + 0.2


def test_bad_channels_nan_gaps_and_events():
    rec = make_synthetic_recording(duration_s=30.0, n_bad_channels=2, nan_gap_probability=1.0, seed=2)
    x = rec.read(0, rec.n_times)
    assert rec.bad_channels.sum() == 2
    kinds = rec.info["bad_channel_kinds"]
    assert sorted(kinds) == sorted(np.array(rec.channel_names)[rec.bad_channels].tolist())
    good_std = np.nanstd(x[~rec.bad_channels], axis=1)
    for name, kind in kinds.items():
        s = np.nanstd(x[rec.channel_names.index(name)])
        assert s < good_std.min() / 10 if kind == "flat" else s > good_std.max() * 3
    [(g0, g1)] = rec.info["nan_gaps"]
    a, b = round(g0 * rec.sampling_rate), round(g1 * rec.sampling_rate)
    assert np.isnan(x[:, a:b]).all() and np.isfinite(x[:, :a]).all() and np.isfinite(x[:, b:]).all()
    assert all(e.end < g0 - 1.0 or e.onset > g1 + 1.0 for e in rec.events)  # gaps avoid events
    assert len(rec.events) >= 5 and {e.label for e in rec.events} == {"stim_a", "stim_b"}
    responsive = {c for chans in rec.info["responsive_channels"].values() for c in chans}
    assert not responsive & set(kinds)  # responsive contacts are never bad


def _window_features(rec, sound: bool) -> tuple[np.ndarray, np.ndarray]:
    """Log power per channel of 1 s windows at events (1) and midway between events (0)."""
    fs = rec.sampling_rate
    x = np.nan_to_num(rec.read(0, rec.n_times).astype(np.float64))
    if sound:  # notch the line harmonics, then band-pass high gamma
        for f0 in np.arange(rec.info["line_freq"], fs / 2 - 1, rec.info["line_freq"]):
            b, a = scipy.signal.iirnotch(f0, 30.0, fs)
            x = scipy.signal.filtfilt(b, a, x, axis=-1)
        x = scipy.signal.sosfiltfilt(scipy.signal.butter(4, [70, 150], "bandpass", fs=fs, output="sos"), x, axis=-1)
    n = int(fs)
    feats, labels = [], []
    for e, nxt in zip(rec.events[:-1], rec.events[1:], strict=True):
        for start, label in ((e.onset, 1), ((e.end + nxt.onset) / 2 - 0.5, 0)):
            a = int(start * fs)
            feats.append(np.log(x[:, a : a + n].var(axis=-1) + 1e-6))
            labels.append(label)
    return np.array(feats), np.array(labels)


def test_high_gamma_effect_is_learnable_only_with_sound_preprocessing():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = {}
    for sound in (True, False):
        parts = [_window_features(make_synthetic_recording(session=s, seed=0), sound) for s in (0, 1)]
        X = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        scores[sound] = cross_val_score(probe, X, y, cv=cv).mean()
    assert scores[True] > 0.85  # notch + high-gamma power: clearly above chance (0.5)
    assert scores[False] < 0.7  # raw amplitude: dominated by 1/f and line noise


def test_corpus_layout_and_reuse(tmp_path: Path):
    # (generation speed, ~1.5 s for this corpus, is not asserted: tests must not depend on timing)
    index = make_synthetic_corpus(tmp_path / "c", n_subjects=3, sessions_per_subject=2, duration_s=60.0)
    assert isinstance(index, RecordingIndex) and len(index) == 6
    assert index.subjects == ("sub-01", "sub-02", "sub-03")
    rec = index.open("sub-02", "ses-02")
    assert rec.path == tmp_path / "c" / "sub-02" / "ses-02"
    assert rec.n_times == 60 * 512 and rec.sampling_rate == 512.0
    montages = {tuple(index.open(s, "ses-01").channel_names) for s in index.subjects}
    assert len(montages) == 3  # every subject has its own electrodes
    # same parameters: sessions are reused, not rewritten
    mtime = (rec.path / "signals.npy").stat().st_mtime_ns
    make_synthetic_corpus(tmp_path / "c", n_subjects=3, sessions_per_subject=2, duration_s=60.0)
    assert (rec.path / "signals.npy").stat().st_mtime_ns == mtime
    # other parameters: regenerated
    make_synthetic_corpus(tmp_path / "c", n_subjects=3, sessions_per_subject=2, duration_s=60.0, line_freq=50.0)
    assert index.open("sub-02", "ses-02").info["line_freq"] == 50.0


def test_corpus_refuses_foreign_folders(tmp_path: Path):
    write_recording(tmp_path / "sub-01" / "ses-01", np.zeros((2, 600)), sampling_rate=512.0)
    with pytest.raises(FileExistsError, match="not synthetic"):
        make_synthetic_corpus(tmp_path, n_subjects=1, sessions_per_subject=1, duration_s=8.0)
    other = tmp_path / "other"
    make_synthetic_corpus(other, n_subjects=2, sessions_per_subject=1, duration_s=8.0)
    with pytest.raises(FileExistsError, match="not part of this corpus"):
        make_synthetic_corpus(other, n_subjects=1, sessions_per_subject=1, duration_s=8.0)


def test_int16_corpus_needs_no_gaps(tmp_path: Path):
    with pytest.raises(InputError, match="int16 cannot store"):
        make_synthetic_corpus(tmp_path / "a", n_subjects=1, sessions_per_subject=1, duration_s=8.0,
                              dtype="int16", nan_gap_probability=1.0)
    index = make_synthetic_corpus(tmp_path / "b", n_subjects=1, sessions_per_subject=1, duration_s=8.0,
                                  dtype="int16", nan_gap_probability=0.0)
    assert index[0].storage_dtype == "int16"


def test_invalid_arguments():
    with pytest.raises(InputError, match="sampling_rate must exceed 300"):
        make_synthetic_recording(sampling_rate=256.0)
    with pytest.raises(InputError, match="line_freq"):
        make_synthetic_recording(line_freq=400.0)
    with pytest.raises(InputError, match="event_interval_s"):
        make_synthetic_recording(event_interval_s=0.5)
