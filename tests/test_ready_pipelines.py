"""The ready pipelines in pipelines/: each loads, runs on synthetic SEEG, and the published ones
reproduce an independent reference built from SciPy/NumPy/torch calls written the way the
original projects describe them (see /shared/PUBLISHED_PIPELINES.md)."""

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

import neurocrane as crane
from neurocrane import NeuralBatch, SignalSpec
from neurocrane.data.synthetic import make_synthetic_recording

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
RATE = 2048.0


@pytest.fixture(scope="module")
def seeg():
    """Two 5 s windows of synthetic SEEG at 2048 Hz (two shafts, 60 Hz line noise)."""
    rec = make_synthetic_recording(duration_s=12.0, sampling_rate=RATE, n_shafts=2, contacts_per_shaft=6, seed=3,
                                   nan_gap_probability=0.0, n_bad_channels=0)
    n = int(5 * RATE)
    x = np.stack([rec.read(0, n), rec.read(n, 2 * n)]).astype(np.float64)
    return x, rec.channel_names


def _label_parts(name):
    stem, number = re.fullmatch(r"(.*[A-Za-z])(\d+)", name).groups()
    return stem, int(number)


def _laplacian_reference(x, names, require_both):
    """Per-electrode loop, the way the original code describes it."""
    parts = [_label_parts(n) for n in names]
    index = {p: i for i, p in enumerate(parts)}
    out, kept = [], []
    for i, (stem, number) in enumerate(parts):
        neighbours = [index[(stem, number + d)] for d in (-1, 1) if (stem, number + d) in index]
        if require_both and len(neighbours) < 2:
            continue
        if not neighbours:
            out.append(x[:, i])
        else:
            out.append(x[:, i] - x[:, neighbours].mean(axis=1))
        kept.append(names[i])
    return np.stack(out, axis=1), kept


@pytest.mark.parametrize("path", sorted(PIPELINES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_ready_pipeline_loads_validates_and_runs(path, seeg):
    x, names = seeg
    pipe = crane.Pipeline.load(path)
    spec = SignalSpec(shape=(None, len(names), x.shape[-1]), sampling_rate=RATE, channel_names=names)
    out_spec = pipe.validate(spec)
    out = pipe(NeuralBatch(torch.from_numpy(x).float(), sampling_rate=RATE, channel_names=names))
    assert tuple(out.signals.shape[1:]) == tuple(out_spec.shape[1:])
    assert torch.isfinite(out.signals).all()
    assert crane.Pipeline.from_yaml(pipe.to_yaml()) == pipe


def test_brainbert_matches_the_published_recipe(seeg):
    x, names = seeg
    # reference: causal iirnotch (Q=30) at 60..360 Hz, Laplacian (both neighbours), scipy.stft
    ref = x.copy()
    for f0 in (60, 120, 180, 240, 300, 360):
        b, a = scipy.signal.iirnotch(f0, 30.0, fs=RATE)
        ref = scipy.signal.lfilter(b, a, ref, axis=-1)
    ref, kept = _laplacian_reference(ref, names, require_both=True)
    _, _, z = scipy.signal.stft(ref, fs=RATE, nperseg=400, noverlap=350)  # hann, zeros boundary, padded
    mag = np.abs(z[..., :40, :])
    std = mag.std(axis=-1, keepdims=True)
    std[std == 0] = 1.0
    mag = (mag - mag.mean(axis=-1, keepdims=True)) / std
    mag = np.nan_to_num(mag[..., 10:-10])
    expected = np.swapaxes(mag, -1, -2)  # (batch, electrode, time, freq)

    pipe = crane.Pipeline.load(PIPELINES / "brainbert.yaml")
    out = pipe(NeuralBatch(torch.from_numpy(x), sampling_rate=RATE, channel_names=names))
    assert out.channel_names == tuple(kept)
    assert out.axes == ("batch", "channel", "time", "freq")
    assert out.frequencies == pytest.approx([5.12 * k for k in range(40)])
    assert out.signals.shape == expected.shape
    # tolerance: the causal notch is applied by FFT (exact up to the truncated IIR tail), z-scored
    # values are O(1); 1e-6 absolute is far below any effect of a wrong parameter
    np.testing.assert_allclose(out.signals.numpy(), expected, atol=1e-6)


def test_neuroprobe_linear_matches_the_published_recipe(seeg):
    x, names = seeg
    x = x[..., :2048]  # 1 s windows, as Neuroprobe
    ref, kept = _laplacian_reference(x, names, require_both=False)
    flat = torch.from_numpy(ref).reshape(-1, ref.shape[-1])
    spec = torch.stft(flat, n_fft=512, hop_length=512 - int(512 * 0.75), win_length=512,
                      window=torch.hann_window(512, dtype=flat.dtype), center=True, pad_mode="reflect",
                      normalized=False, return_complex=True)
    freqs = torch.fft.rfftfreq(512, 1 / RATE)
    spec = spec[:, (freqs >= 0) & (freqs <= 150)].abs()
    expected = spec.reshape(*ref.shape[:2], *spec.shape[1:]).transpose(-1, -2)

    pipe = crane.Pipeline.load(PIPELINES / "neuroprobe_linear.yaml")
    out = pipe(NeuralBatch(torch.from_numpy(x), sampling_rate=RATE, channel_names=names))
    assert out.channel_names == tuple(kept) == tuple(names)  # nobody dropped
    assert len(out.frequencies) == 38 and out.frequencies[-1] == 148.0
    assert out.signals.shape == expected.shape
    torch.testing.assert_close(out.signals, expected, rtol=1e-10, atol=1e-9)


def test_line_noise_is_removed_by_the_time_domain_pipeline(seeg):
    x, names = seeg
    pipe = crane.Pipeline.load(PIPELINES / "car_notch_bandpass_zscore.yaml")
    out = pipe(torch.from_numpy(x), sampling_rate=RATE, channel_names=names).numpy()
    freqs, before = scipy.signal.welch(x, fs=RATE, nperseg=2048)
    _, after = scipy.signal.welch(out, fs=RATE, nperseg=2048)
    line = np.argmin(np.abs(freqs - 60))
    near = (np.abs(freqs - 60) > 5) & (np.abs(freqs - 60) < 20)
    # 60 Hz stands far above its neighbourhood before, and not after
    assert np.median(before[..., line] / before[..., near].mean(-1)) > 10
    assert np.median(after[..., line] / after[..., near].mean(-1)) < 1.0
    assert after[..., freqs > 300].mean() < 1e-3 * after[..., (freqs > 5) & (freqs < 150)].mean()


def test_high_gamma_pipeline_sees_the_synthetic_events():
    rec = make_synthetic_recording(duration_s=40.0, sampling_rate=1024.0, seed=1, nan_gap_probability=0.0)
    pipe = crane.Pipeline.load(PIPELINES / "high_gamma_envelope.yaml")
    x = torch.from_numpy(rec.read(0, rec.n_times)).double()
    env = pipe(x[None], sampling_rate=rec.sampling_rate, channel_names=rec.channel_names)[0]
    event_mask = torch.zeros(rec.n_times, dtype=torch.bool)
    for ev in rec.events:
        event_mask[int(ev.onset * rec.sampling_rate): int((ev.onset + ev.duration) * rec.sampling_rate)] = True
    contrast = env[:, event_mask].mean(-1) - env[:, ~event_mask].mean(-1)
    # a few contacts respond (each event class drives its own three contacts, so the contrast
    # over all events is about half the per-class one); most contacts do not
    assert contrast.max() > 0.4
    assert (contrast > 0.4).sum() >= 3
    assert (contrast.abs() < 0.15).float().mean() > 0.6
