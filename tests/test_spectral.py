"""Spectral ops: spectrogram vs SciPy/torch, Morlet vs MNE, Hilbert envelope, band power."""

from __future__ import annotations

import mne
import numpy as np
import pytest
import scipy.signal
import torch

from neurocrane import NeuralBatch, Pipeline, SignalSpec
from neurocrane.errors import InputError, SpecError, TransformValidationError
from neurocrane.preprocessing import (
    CANONICAL_BANDS,
    BandPower,
    HilbertEnvelope,
    MorletTransform,
    Spectrogram,
    Trim,
    ZScore,
    band_power,
    compute_spectrogram,
    hilbert_envelope,
    morlet_transform,
    morlet_wavelet_lengths,
)

RNG = np.random.default_rng(1234)


def _noise(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


# -- spectrogram ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2048, 2100, 4133])
def test_spectrogram_matches_scipy_stft_with_brainbert_settings(n):
    x = _noise(2, 3, n)
    f, _, z = scipy.signal.stft(x, fs=2048, nperseg=400, noverlap=350)  # hann, zeros boundary, padded
    ours = compute_spectrogram(
        torch.from_numpy(x), 2048, window_size=400, hop_length=50,
        center=True, pad_mode="constant", pad_end=True, scale_by_window=True,
    )
    assert ours.shape == z.shape
    np.testing.assert_allclose(ours.numpy(), np.abs(z), rtol=0, atol=1e-12)

    node = Spectrogram(window_length=400 / 2048, hop_length=50 / 2048, freq_range=(0, 200), pad_end=True, scale_by_window=True)
    out = node(NeuralBatch(torch.from_numpy(x), sampling_rate=2048.0))
    # BrainBERT keeps the first 40 bins (5.12 Hz apart): exactly scipy's f[:40]
    assert out.frequencies == tuple(f[:40])
    np.testing.assert_allclose(out.signals.numpy(), np.abs(z[..., :40, :]), atol=1e-12)
    assert out.axes == ("batch", "channel", "freq", "time")
    assert out.sampling_rate == pytest.approx(2048 / 50)
    assert node.output_spec(SignalSpec(shape=(2, 3, n), sampling_rate=2048.0)).shape == tuple(out.signals.shape)


@pytest.mark.parametrize("n", [2048, 1000])
def test_spectrogram_matches_torch_stft_with_neuroprobe_settings(n):
    x = torch.from_numpy(_noise(2, 3, n))
    ref = torch.stft(
        x.reshape(-1, n), n_fft=512, hop_length=128, window=torch.hann_window(512, dtype=torch.float64),
        center=True, pad_mode="reflect", normalized=False, return_complex=True,
    ).abs().reshape(2, 3, 257, -1)
    node = Spectrogram(window_length=512 / 2048, hop_length=128 / 2048, freq_range=(0, 150), pad_mode="reflect")
    out = node(NeuralBatch(x, sampling_rate=2048.0))
    assert len(out.frequencies) == 38 and out.frequencies[-1] == 148.0
    torch.testing.assert_close(out.signals, ref[..., :38, :], rtol=0, atol=1e-12)


def test_spectrogram_power_and_magnitude_match_scipy_spectrogram():
    x = _noise(3, 3000)
    kw = dict(fs=1000, window="hann", nperseg=256, noverlap=128, detrend=False, scaling="spectrum")
    f, _, psd = scipy.signal.spectrogram(x, mode="psd", **kw)
    _, _, mag = scipy.signal.spectrogram(x, mode="magnitude", **kw)
    args = dict(window_size=256, hop_length=128, center=False, scale_by_window=True)
    power = compute_spectrogram(torch.from_numpy(x), 1000, output="power", **args).numpy()
    magnitude = compute_spectrogram(torch.from_numpy(x), 1000, output="magnitude", **args).numpy()
    assert power.shape == psd.shape  # unbatched in, unbatched out
    # scipy's one-sided power doubles every bin except DC and Nyquist
    np.testing.assert_allclose(power[:, 1:-1], psd[:, 1:-1] / 2, atol=1e-14)
    np.testing.assert_allclose(power[:, [0, -1]], psd[:, [0, -1]], atol=1e-14)
    np.testing.assert_allclose(magnitude, mag, atol=1e-14)
    node = Spectrogram(window_length=0.256, hop_length=0.128, center=False, output="power")
    assert node.output_spec(SignalSpec(shape=(1, 3, 3000), sampling_rate=1000.0)).frequencies == tuple(f)


def test_spectrogram_keeps_float32_and_batch_independence():
    x = torch.randn(3, 2, 700)
    full = compute_spectrogram(x, 500.0, window_size=100, hop_length=25, log=True)
    assert full.dtype == torch.float32
    for i in range(3):
        torch.testing.assert_close(compute_spectrogram(x[i], 500.0, window_size=100, hop_length=25, log=True), full[i])


# -- Morlet ---------------------------------------------------------------------------------------
FREQS = [6.0, 10.0, 23.5, 80.0, 250.0]


@pytest.mark.parametrize("zero_mean", [True, False])
@pytest.mark.parametrize("n_cycles", [7.0, [3.0, 4.0, 5.0, 6.0, 7.5]])
def test_morlet_matches_mne_tfr_array_morlet(zero_mean, n_cycles):
    x = _noise(2, 3, 1000)
    ref = mne.time_frequency.tfr_array_morlet(
        x, 500.0, FREQS, n_cycles=n_cycles, zero_mean=zero_mean, output="complex", verbose=False
    )
    ours = morlet_transform(torch.from_numpy(x), 500.0, FREQS, n_cycles, "complex", zero_mean=zero_mean)
    assert ours.dtype == torch.complex128 and ours.shape == ref.shape
    # float64: the same wavelets and the same zero-padded convolution, to rounding error everywhere
    # (edges included)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_morlet_power_float32_and_decim_match_mne():
    x = _noise(2, 2, 900)
    ref = mne.time_frequency.tfr_array_morlet(x, 500.0, FREQS, n_cycles=5.0, output="power", decim=3, verbose=False)
    ours = morlet_transform(torch.from_numpy(x).float(), 500.0, FREQS, 5.0, "power", decim=3)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape == (2, 2, 5, 300)
    # float32 FFTs: relative error ~1e-7 of the largest power
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-5 * ref.max())
    magnitude = morlet_transform(torch.from_numpy(x), 500.0, FREQS, 5.0, "magnitude", decim=3)
    np.testing.assert_allclose(magnitude.numpy() ** 2, ref, rtol=1e-10, atol=1e-12 * ref.max())


def test_morlet_of_a_sinusoid_peaks_at_its_frequency_and_unbatched_rank():
    t = np.arange(2000) / 1000
    x = torch.from_numpy(np.stack([np.sin(2 * np.pi * 20 * t), np.sin(2 * np.pi * 60 * t)]))
    freqs = [10.0, 20.0, 40.0, 60.0, 80.0]
    power = morlet_transform(x, 1000.0, freqs, 7.0)  # (channels, time) in -> (channels, freqs, time)
    assert power.shape == (2, 5, 2000)
    middle = power[..., 800:1200].mean(-1)
    assert middle[0].argmax() == 1 and middle[1].argmax() == 3


def test_morlet_node_updates_metadata_and_spec():
    node = MorletTransform(frequencies=(8.0, 16.0, 32.0), n_cycles=(3, 4, 5), decim=4)
    batch = NeuralBatch(torch.randn(2, 3, 1001), sampling_rate=400.0, channel_names=["a", "b", "c"])
    out = node(batch)
    assert out.axes == ("batch", "channel", "freq", "time")
    assert out.frequencies == (8.0, 16.0, 32.0)
    assert out.sampling_rate == 100.0
    assert out.signals.shape == (2, 3, 3, 251)
    assert out.channel_names == ("a", "b", "c")
    assert node.output_spec(batch.spec).shape == tuple(out.signals.shape)
    assert node.min_duration(batch.spec) == pytest.approx(morlet_wavelet_lengths(400.0, [8.0], 3.0)[0] / 400.0)
    logged = MorletTransform(frequencies=(8.0, 16.0, 32.0), n_cycles=(3, 4, 5), decim=4, log=True)(batch)
    torch.testing.assert_close(logged.signals, torch.log(out.signals + 1e-10))


def test_morlet_errors_say_what_is_wrong():
    x = torch.randn(2, 500)
    with pytest.raises(InputError, match="Nyquist"):
        morlet_transform(x, 100.0, [10.0, 60.0])
    with pytest.raises(InputError, match="n_cycles must be positive"):
        morlet_transform(x, 100.0, [10.0], n_cycles=0)
    with pytest.raises(InputError, match="at least one frequency"):
        morlet_transform(x, 100.0, [])
    with pytest.raises(InputError, match="longer input"):
        morlet_transform(x, 100.0, [1.0])
    with pytest.raises(InputError, match="one per frequency"):
        morlet_transform(x, 100.0, [10.0, 20.0], n_cycles=[3, 4, 5])
    with pytest.raises(InputError, match="shape"):
        morlet_transform(torch.randn(5), 100.0, [10.0])
    with pytest.raises(TransformValidationError, match="n_cycles"):
        MorletTransform(frequencies=(10.0,), n_cycles=-1.0)
    with pytest.raises(TransformValidationError, match="frequencies"):
        MorletTransform(frequencies=())
    with pytest.raises(SpecError, match="Nyquist"):
        Pipeline([MorletTransform(frequencies=(10.0, 80.0))])(x, sampling_rate=100.0)


# -- Hilbert envelope and band power ---------------------------------------------------------------
@pytest.mark.parametrize("n", [1000, 999])
def test_envelope_without_band_is_scipy_hilbert_magnitude(n):
    x = _noise(2, 3, n)
    ours = hilbert_envelope(torch.from_numpy(x), 500.0, None)
    np.testing.assert_allclose(ours.numpy(), np.abs(scipy.signal.hilbert(x)), atol=1e-12)


@pytest.mark.parametrize("transition", [0.0, 5.0])
def test_envelope_of_am_high_gamma_carrier_recovers_the_modulation(transition):
    fs = 1000.0
    t = np.arange(2000) / fs
    modulation = 1 + 0.5 * np.sin(2 * np.pi * 3 * t)
    carrier = modulation * np.sin(2 * np.pi * 100 * t)
    x = carrier + 2.0 * np.sin(2 * np.pi * 10 * t)  # a strong slow rhythm the band-pass must remove
    env = hilbert_envelope(torch.from_numpy(x[None]), fs, (70.0, 150.0), transition=transition)
    np.testing.assert_allclose(env[0].numpy(), modulation, atol=1e-9)
    # without the band-pass the slow rhythm leaks into the envelope
    assert np.abs(hilbert_envelope(torch.from_numpy(x[None]), fs, None)[0].numpy() - modulation).max() > 0.5


def test_band_power_of_a_sinusoid_lands_in_its_band():
    fs, n = 1000.0, 2000  # 0.5 Hz bins: these frequencies sit exactly on bins
    t = np.arange(n) / fs
    tones = [2.5, 6.0, 10.5, 20.0, 50.0, 100.0]  # one per canonical band, in order
    x = torch.from_numpy(np.stack([2.0 * np.sin(2 * np.pi * f * t) for f in tones]))
    power = band_power(x, fs, CANONICAL_BANDS, average=True)  # (channels, bands)
    assert power.shape == (6, 6)
    np.testing.assert_allclose(torch.diagonal(power).numpy(), 4.0, rtol=1e-9)  # amplitude 2 -> a**2
    off = power - torch.diag(torch.diagonal(power))
    assert off.abs().max() < 1e-9
    over_time = band_power(x, fs, CANONICAL_BANDS)
    assert over_time.shape == (6, 6, n)
    np.testing.assert_allclose(over_time[3, 3].numpy(), 4.0, rtol=1e-9)


def test_band_power_accepts_pairs_mapping_and_log():
    x = torch.randn(2, 3, 800, dtype=torch.float64)
    pairs = band_power(x, 400.0, [(4.0, 8.0), (70.0, 150.0)])
    named = band_power(x, 400.0, {"theta": (4.0, 8.0), "hg": (70.0, 150.0)})
    torch.testing.assert_close(pairs, named)
    torch.testing.assert_close(band_power(x, 400.0, [(4.0, 8.0)], log=True, log_eps=1e-6), torch.log(pairs[:, :, :1] + 1e-6))
    # bands are half-open (low <= f < high): a tone exactly on a shared edge counts once, in the upper band
    t = torch.arange(800, dtype=torch.float64) / 400.0
    edge = band_power(torch.sin(2 * torch.pi * 8.0 * t)[None], 400.0, [(4.0, 8.0), (8.0, 13.0)], average=True)
    torch.testing.assert_close(edge, torch.tensor([[0.0, 1.0]], dtype=torch.float64), atol=1e-12, rtol=0)
    # with raised-cosine edges the gains cross at 0.5 in amplitude: a quarter of the power each
    soft = band_power(torch.sin(2 * torch.pi * 8.0 * t)[None], 400.0, [(4.0, 8.0), (8.0, 13.0)], average=True, transition=2.0)
    torch.testing.assert_close(soft, torch.tensor([[0.25, 0.25]], dtype=torch.float64), atol=1e-12, rtol=0)


def test_band_power_node_metadata():
    batch = NeuralBatch(torch.randn(2, 3, 600), sampling_rate=400.0)
    node = BandPower(bands=(("theta", 4.0, 8.0), ("beta", 13.0, 30.0), ("hg", 70.0, 150.0)))
    out = node(batch)
    assert out.axes == ("batch", "channel", "feature", "time")
    assert out.signals.shape == (2, 3, 3, 600)
    assert out.sampling_rate == 400.0 and out.frequencies is None
    assert node.band_names == ("theta", "beta", "hg")
    assert node.output_spec(batch.spec).shape == (2, 3, 3, 600)
    avg = BandPower(bands=node.bands, average=True)(batch)
    assert avg.axes == ("batch", "channel", "feature") and avg.sampling_rate is None
    torch.testing.assert_close(avg.signals, out.signals.mean(-1))
    # a later z-score over time works on the feature layout by axis name
    z = Pipeline([node, ZScore(axes=("time",))])(batch)
    torch.testing.assert_close(z.signals.mean(-1), torch.zeros(2, 3, 3), atol=1e-5, rtol=0)


def test_hilbert_node_keeps_layout():
    batch = NeuralBatch(torch.randn(2, 3, 600, dtype=torch.float64), sampling_rate=400.0)
    out = HilbertEnvelope(band=(70.0, 150.0), transition=4.0)(batch)
    assert out.axes == batch.axes and out.sampling_rate == 400.0 and out.dtype == torch.float64
    torch.testing.assert_close(out.signals, hilbert_envelope(batch.signals, 400.0, (70.0, 150.0), transition=4.0))
    assert (out.signals >= 0).all()


def test_band_and_envelope_errors():
    x = torch.randn(2, 400)
    with pytest.raises(InputError, match="at least one"):
        band_power(x, 200.0, [])
    with pytest.raises(InputError, match="Nyquist"):
        band_power(x, 200.0)  # high gamma needs more than 300 Hz sampling
    with pytest.raises(InputError, match="low < high"):
        band_power(x, 200.0, [(10.0, 5.0)])
    with pytest.raises(InputError, match="transition"):
        hilbert_envelope(x, 200.0, (10.0, 12.0), transition=5.0)
    with pytest.raises(InputError, match="sampling_rate"):
        hilbert_envelope(x, float("nan"), (10.0, 12.0))
    with pytest.raises(TransformValidationError, match="at least one"):
        BandPower(bands=())
    with pytest.raises(TransformValidationError, match="unique"):
        BandPower(bands=(("a", 1.0, 2.0), ("a", 3.0, 4.0)))
    with pytest.raises(TransformValidationError, match="low < high"):
        HilbertEnvelope(band=(150.0, 70.0))
    with pytest.raises(SpecError, match="high_gamma"):
        Pipeline([BandPower()])(x, sampling_rate=200.0)


# -- shared properties ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fn",
    [
        lambda x: morlet_transform(x, 200.0, [10.0, 40.0], 4.0),
        lambda x: hilbert_envelope(x, 200.0, (20.0, 60.0)),
        lambda x: band_power(x, 200.0, [(4.0, 8.0), (30.0, 90.0)], average=True),
    ],
    ids=["morlet", "hilbert", "band_power"],
)
def test_batch_independence_dtype_and_autograd(fn):
    x = torch.randn(3, 2, 400, requires_grad=True)
    out = fn(x)
    assert out.dtype == torch.float32 and out.device == x.device
    for i in range(3):
        torch.testing.assert_close(fn(x[i : i + 1]), out[i : i + 1])
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_spectral_nodes_in_a_pipeline_round_trip():
    x = torch.randn(2, 3, 1200)
    pipe = Pipeline(
        [
            MorletTransform(frequencies=(10.0, 20.0, 40.0), n_cycles=(3.0, 4.0, 5.0), decim=2, output="magnitude"),
            ZScore(axes=("time",)),
            Trim(frames=20),
        ]
    )
    again = Pipeline.from_dict(pipe.to_dict())
    assert again == pipe
    assert Pipeline.from_yaml(pipe.to_yaml()) == pipe
    torch.testing.assert_close(again(x, sampling_rate=400.0), pipe(x, sampling_rate=400.0))
    assert pipe(x, sampling_rate=400.0).shape == (2, 3, 3, 560)
    bp = Pipeline([HilbertEnvelope(band=(30.0, 90.0)), BandPower(bands=(("a", 1.0, 4.0),), average=True)])
    assert Pipeline.from_json(bp.to_json()) == bp


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    x = torch.randn(2, 3, 500)
    spec = compute_spectrogram(x.to(dtype), 500.0, window_size=100, hop_length=50)
    assert spec.dtype == dtype
    torch.testing.assert_close(spec.float(), compute_spectrogram(x.to(dtype).float(), 500.0, window_size=100, hop_length=50).to(dtype).float())
    assert morlet_transform(x.to(dtype), 500.0, [20.0]).dtype == dtype
    assert band_power(x.to(dtype), 500.0, [(4.0, 8.0)]).dtype == dtype


def test_spectrogram_spec_reports_reflect_padding_on_too_short_input():
    node = Spectrogram(window_length=0.5, hop_length=0.1, pad_mode="reflect")
    with pytest.raises(SpecError, match="reflect padding"):
        Pipeline([node])(torch.randn(1, 2, 100), sampling_rate=500.0)
