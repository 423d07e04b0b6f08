"""Tests of neurocrane.preprocessing.filtering against SciPy and MNE.

Tolerances (stated where used):
* "interior": samples farther from both ends than the filter's impulse response needs to
  decay; there our FFT application and SciPy's recursive filters compute the same linear
  operator, so float64 results agree to ~1e-9 of the signal scale.
* "edges": both SciPy's ``filtfilt`` and ours pad the signal (they differently), so near the
  ends we compare each against the result of filtering a much longer recording the window was
  cut from, and require ours to be about as close as SciPy's.
* float32: 1e-4 of the signal scale (FFT round-off of a few thousand points).
"""

from __future__ import annotations

import math

import mne
import numpy as np
import pytest
import scipy.signal as ss
import torch

import neurocrane.preprocessing.filtering as filtering
from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import InputDTypeError, InputError, SpecError, TransformValidationError
from neurocrane.pipeline import Pipeline
from neurocrane.preprocessing import (
    Bandpass,
    Highpass,
    Lowpass,
    Notch,
    Resample,
    bandpass_filter,
    highpass_filter,
    lowpass_filter,
    notch_filter,
    notch_frequencies,
    resample,
)

mne.set_log_level("ERROR")


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _sine(freq: float, rate: float, n: int, phase: float = 0.3) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / rate + phase)


def _t(x: np.ndarray) -> torch.Tensor:
    """A (channels, time) tensor from a 1-D or 2-D array."""
    return torch.from_numpy(np.atleast_2d(x))


def _gain(y: np.ndarray, x: np.ndarray, margin: int) -> float:
    """Amplitude ratio (RMS out / RMS in) over the interior."""
    return float(np.sqrt((y[..., margin:-margin] ** 2).mean() / (x[..., margin:-margin] ** 2).mean()))


# -- frequency response, measured -----------------------------------------------------------------
def test_bandpass_passband_cutoffs_and_stopband_measured_on_sinusoids():
    rate, n, margin = 1000.0, 8000, 2000
    sos = ss.butter(4, [10, 100], btype="bandpass", fs=rate, output="sos")
    for freq, lo, hi in [
        (30.0, 0.99, 1.01),  # pass band: ripple under 1 %
        (50.0, 0.99, 1.01),
        (10.0, 0.48, 0.52),  # zero phase: |H|^2 = 0.5 (-6 dB) at each cutoff
        (100.0, 0.48, 0.52),
        (1.0, 0.0, 1e-3),  # stop band: at least 60 dB down
        (400.0, 0.0, 1e-3),
    ]:
        x = _sine(freq, rate, n)
        y = bandpass_filter(_t(x), rate, 10.0, 100.0).numpy()
        g = _gain(y, x, margin)
        assert lo <= g <= hi, (freq, g)
        # and the measured gain is the forward-backward response |H|^2 of the scipy design
        _, h = ss.sosfreqz(sos, worN=[freq], fs=rate)
        assert g == pytest.approx(abs(h[0]) ** 2, rel=1e-3, abs=1e-6)


def test_highpass_and_lowpass_measured_gains():
    rate, n, margin = 1000.0, 8000, 2000
    for fn, cutoff, passes, stops in [
        (highpass_filter, 20.0, 150.0, 2.0),
        (lowpass_filter, 50.0, 10.0, 300.0),
    ]:
        gp = _gain(fn(_t(_sine(passes, rate, n)), rate, cutoff).numpy(), _sine(passes, rate, n), margin)
        gs = _gain(fn(_t(_sine(stops, rate, n)), rate, cutoff).numpy(), _sine(stops, rate, n), margin)
        gc = _gain(fn(_t(_sine(cutoff, rate, n)), rate, cutoff).numpy(), _sine(cutoff, rate, n), margin)
        assert gp == pytest.approx(1.0, abs=1e-3)
        assert gs < 1e-3
        assert gc == pytest.approx(0.5, abs=0.02)


def test_causal_bandpass_has_minus_3db_cutoffs():
    # a single forward pass applies |H|, so the Butterworth cutoff is at 1/sqrt(2)
    rate, n = 1000.0, 8000
    x = _sine(100.0, rate, n)
    y = bandpass_filter(_t(x), rate, 10.0, 100.0, phase="causal").numpy()
    assert _gain(y, x, 2000) == pytest.approx(1 / math.sqrt(2), abs=0.01)


def test_notch_removes_line_and_harmonics_and_keeps_the_rest():
    rate, n, margin = 2048.0, 16384, 4096
    line = sum(_sine(f, rate, n, phase=f / 100) for f in (60.0, 120.0, 180.0))
    keep = _sine(47.0, rate, n)
    x = _t(line + keep)
    y = notch_filter(x, rate, 60.0, n_harmonics=3, quality=30.0).numpy()
    residual = y - keep
    assert _gain(residual, line, margin) < 3e-3  # line noise at least 50 dB down
    assert _gain(y, keep, margin) == pytest.approx(1.0, abs=0.01)
    # a harmonic beyond n_harmonics is left alone
    x4 = _sine(240.0, rate, n)
    assert _gain(notch_filter(_t(x4), rate, 60.0, n_harmonics=3).numpy(), x4, margin) > 0.99


def test_zero_phase_keeps_a_symmetric_pulse_symmetric_and_causal_does_not():
    rate, n = 1000.0, 4001
    x = np.zeros(n)
    x[n // 2] = 1.0
    for fn in (
        lambda t, **k: bandpass_filter(t, rate, 5.0, 80.0, **k),
        lambda t, **k: notch_filter(t, rate, 50.0, **k),
        lambda t, **k: lowpass_filter(t, rate, 40.0, **k),
    ):
        y = fn(torch.from_numpy(x[None])).numpy()[0]
        np.testing.assert_allclose(y, y[::-1], atol=1e-12)
        yc = fn(torch.from_numpy(x[None]), phase="causal").numpy()[0]
        assert np.abs(yc[: n // 2]).max() < 1e-12  # causal: nothing before the impulse
        assert np.abs(yc - yc[::-1]).max() > 1e-3


def test_zero_phase_cross_correlation_peaks_at_lag_zero():
    rate, n = 1000.0, 4000
    x = _noise((1, n), seed=3)
    y = bandpass_filter(torch.from_numpy(x), rate, 20.0, 60.0).numpy()[0]
    xin = ss.sosfiltfilt(ss.butter(8, [20, 60], "bandpass", fs=rate, output="sos"), x[0])  # in-band part
    lags = ss.correlation_lags(n, n)
    corr = ss.correlate(y, xin)
    assert lags[np.argmax(corr)] == 0
    yc = bandpass_filter(torch.from_numpy(x), rate, 20.0, 60.0, phase="causal").numpy()[0]
    assert lags[np.argmax(ss.correlate(yc, xin))] > 0  # the causal filter delays


# -- against SciPy ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fn, sos_args",
    [
        (lambda t, r: bandpass_filter(t, r, 4.0, 120.0), (4, [4.0, 120.0], "bandpass")),
        (lambda t, r: bandpass_filter(t, r, 4.0, 120.0, order=2), (2, [4.0, 120.0], "bandpass")),
        (lambda t, r: highpass_filter(t, r, 8.0), (4, 8.0, "highpass")),
        (lambda t, r: lowpass_filter(t, r, 150.0, order=6), (6, 150.0, "lowpass")),
    ],
)
def test_zero_phase_matches_sosfiltfilt_in_the_interior(fn, sos_args):
    rate = 1000.0
    x = _noise((2, 3, 9000), seed=1) + 5.0  # DC offset on purpose
    y = fn(torch.from_numpy(x), rate).numpy()
    ref = ss.sosfiltfilt(ss.butter(*sos_args, fs=rate, output="sos"), x, axis=-1)
    # interior: 3000 samples (3 s) from each end, where both filters' edge effects are gone
    np.testing.assert_allclose(y[..., 3000:-3000], ref[..., 3000:-3000], atol=1e-9)


def test_zero_phase_edges_are_as_good_as_sosfiltfilt():
    """Cut a window out of a long recording; near the window's ends compare both SciPy's and our
    output with the long recording's filtered values (the answer without edge effects)."""
    rate, n, pad = 1000.0, 3000, 20000
    long = np.cumsum(_noise((40, n + 2 * pad), seed=7), axis=-1) * 0.05 + _noise((40, n + 2 * pad), seed=8)
    sos = ss.butter(4, [2.0, 100.0], btype="bandpass", fs=rate, output="sos")
    truth = ss.sosfiltfilt(sos, long, axis=-1)[:, pad : pad + n]
    window = long[:, pad : pad + n]
    ours = bandpass_filter(torch.from_numpy(window), rate, 2.0, 100.0).numpy()
    theirs = ss.sosfiltfilt(sos, window, axis=-1)
    scale = truth.std()

    def err(y: np.ndarray, a: int, b: int) -> float:
        return float(np.sqrt(((y - truth)[:, a:b] ** 2).mean()) / scale)

    # per 100-500 sample stretch at either end, within 40 % of SciPy's error (filtfilt is not
    # symmetric: its backward pass starts from the forward pass's end state, so it is better at
    # one end and worse at the other)
    for a, b in [(0, 100), (100, 500), (500, 1000), (n - 1000, n - 500), (n - 500, n - 100), (n - 100, n)]:
        assert err(ours, a, b) <= 1.4 * err(theirs, a, b), (a, b, err(ours, a, b), err(theirs, a, b))
    # over both ends together (first and last 0.5 s), within 10 %
    ends = np.r_[0:500, n - 500 : n]
    e_ours = np.sqrt(((ours - truth)[:, ends] ** 2).mean())
    e_scipy = np.sqrt(((theirs - truth)[:, ends] ** 2).mean())
    assert e_ours <= 1.1 * e_scipy, (e_ours, e_scipy)
    # in the window's middle second (1 s from either end) both are close to the truth and to
    # each other: within 5 % of the signal's RMS, sample by sample
    middle = slice(1000, 2000)
    assert np.abs(ours - truth)[:, middle].max() / scale < 0.05
    assert np.abs(ours - theirs)[:, middle].max() / scale < 0.05


def test_causal_bandpass_matches_sosfilt_brainbert_high_gamma():
    rate = 2048.0
    sos = ss.butter(5, [70.0, 250.0], btype="bandpass", fs=rate, output="sos")
    for n in (300, 10240):  # shorter and longer than the impulse response
        x = _noise((2, 4, n), seed=n)
        y = bandpass_filter(torch.from_numpy(x), rate, 70.0, 250.0, order=5, phase="causal").numpy()
        np.testing.assert_allclose(y, ss.sosfilt(sos, x, axis=-1), atol=1e-7)  # every sample, from the first


def test_causal_notch_matches_sequential_lfilter_brainbert():
    rate = 2048.0
    x = _noise((3, 5, 6000), seed=2)
    y = notch_filter(torch.from_numpy(x), rate, freqs=[60, 120, 180, 240, 300, 360], quality=30.0, phase="causal")
    ref = x
    for f0 in (60, 120, 180, 240, 300, 360):
        b, a = ss.iirnotch(f0, 30.0, fs=rate)
        ref = ss.lfilter(b, a, ref, axis=-1)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-5)  # every sample, incl. the start transient


@pytest.mark.parametrize("rate, expected", [(2048.0, (60.0, 120.0, 180.0, 240.0, 300.0)), (500.0, (60.0, 120.0, 180.0, 240.0))])
def test_zero_phase_notch_matches_sequential_filtfilt_neuroprobe(rate, expected):
    # Neuroprobe: 60 Hz and harmonics up to the 5th, Q = 12, filtfilt, harmonics above Nyquist skipped
    assert notch_frequencies(rate, 60.0, n_harmonics=5) == expected
    x = _noise((2, 3, int(rate * 6)), seed=4)
    y = notch_filter(torch.from_numpy(x), rate, 60.0, n_harmonics=5, quality=12.0).numpy()
    ref = x
    for f0 in expected:
        b, a = ss.iirnotch(f0, 12.0, fs=rate)
        ref = ss.filtfilt(b, a, ref, axis=-1)
    m = int(rate)  # 1 s interior margin
    np.testing.assert_allclose(y[..., m:-m], ref[..., m:-m], atol=1e-7)


def test_matches_mne_iir_filter_data_in_the_interior():
    # MNE's IIR path (Butterworth, second-order sections, phase="zero") is sosfiltfilt with its
    # own padding: same operator, so the interior agrees to round-off
    rate = 1000.0
    x = _noise((4, 8000), seed=5)
    ours = bandpass_filter(torch.from_numpy(x), rate, 5.0, 100.0).numpy()
    theirs = mne.filter.filter_data(
        x, rate, 5.0, 100.0, method="iir", iir_params=dict(order=4, ftype="butter", output="sos"), phase="zero"
    )
    np.testing.assert_allclose(ours[:, 2000:-2000], theirs[:, 2000:-2000], atol=1e-9)


def test_notch_agrees_with_mne_notch_filter_on_line_noise():
    # MNE's notch (default FIR, notch width f/200) is a different design, so we compare what both
    # are for: removing 50 Hz + harmonics from a signal and keeping its other content. In the
    # interior both outputs equal the clean signal to 1 % of its RMS, hence each other.
    rate, n = 1000.0, 10000
    clean = _sine(37.0, rate, n) + 0.5 * _sine(83.0, rate, n) + 0.3 * _noise((n,), seed=6)
    clean = ss.sosfiltfilt(ss.butter(4, [20, 45], "bandpass", fs=rate, output="sos"), clean)  # away from the notches
    line = 2.0 * _sine(50.0, rate, n) + _sine(150.0, rate, n)
    x = (clean + line)[None]
    ours = notch_filter(torch.from_numpy(x), rate, 50.0, quality=30.0).numpy()[0]
    theirs = mne.filter.notch_filter(x, rate, np.arange(50, 500, 50))[0]
    interior = slice(2000, -2000)
    scale = clean[interior].std()
    assert np.sqrt(((ours - clean)[interior] ** 2).mean()) / scale < 0.01
    assert np.sqrt(((theirs - clean)[interior] ** 2).mean()) / scale < 0.01
    assert np.sqrt(((ours - theirs)[interior] ** 2).mean()) / scale < 0.02


# -- resampling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("orig, new", [(2048, 512), (2048, 500), (1000, 2048), (2048, 200), (512, 2048)])
@pytest.mark.parametrize("n", [4096, 1001])
def test_resample_matches_resample_poly(orig, new, n):
    x = _noise((2, 3, n), seed=n)
    g = math.gcd(orig, new)
    ref = ss.resample_poly(x, new // g, orig // g, axis=-1)
    y = resample(torch.from_numpy(x), float(orig), float(new))
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)  # float64: round-off only
    y32 = resample(torch.from_numpy(x).float(), orig, new)
    assert y32.dtype == torch.float32
    np.testing.assert_allclose(y32.numpy(), ref, atol=1e-5)


def test_resample_anti_aliases():
    # a 400 Hz tone cannot exist at 500 Hz sampling; it must be filtered out, not folded to 100 Hz
    x = _sine(400.0, 2048.0, 8192)
    y = resample(torch.from_numpy(x[None]), 2048.0, 500.0).numpy()[0]
    assert np.sqrt((y[100:-100] ** 2).mean()) < 1e-3
    tone = _sine(50.0, 2048.0, 8192)
    kept = resample(torch.from_numpy(tone[None]), 2048.0, 500.0).numpy()[0]
    np.testing.assert_allclose(kept[100:-100], _sine(50.0, 500.0, 2000)[100:-100], atol=2e-3)


def test_resample_same_rate_is_a_copy_and_bad_ratio_raises():
    x = torch.randn(2, 3, 100)
    y = resample(x, 1000.0, 1000.0)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()
    with pytest.raises(InputError, match="not a ratio up/down"):
        resample(x, 1000.0, 1000.0 * math.pi)


# -- shapes, dtypes, devices, autograd, cache ------------------------------------------------------
_FUNCS = {
    "bandpass": lambda t, **k: bandpass_filter(t, 512.0, 5.0, 60.0, **k),
    "highpass": lambda t, **k: highpass_filter(t, 512.0, 5.0, **k),
    "lowpass": lambda t, **k: lowpass_filter(t, 512.0, 60.0, **k),
    "notch": lambda t, **k: notch_filter(t, 512.0, 50.0, **k),
    "resample": lambda t, **k: resample(t, 512.0, 200.0),
}


@pytest.mark.parametrize("name", list(_FUNCS))
def test_ranks_dtypes_and_batch_independence(name):
    fn = _FUNCS[name]
    x = torch.from_numpy(_noise((3, 4, 700), seed=11))
    y = fn(x)
    assert y.dtype == torch.float64 and y.device == x.device and y.shape[:2] == (3, 4)
    y2 = fn(x[1])  # (channels, time) in, same rank out, same values
    assert y2.shape == y.shape[1:]
    torch.testing.assert_close(y2, y[1], atol=1e-12, rtol=0)
    y32 = fn(x.float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y, atol=1e-4 * float(y.abs().max()), rtol=0)
    y16 = fn(x.to(torch.bfloat16))
    assert y16.dtype == torch.bfloat16
    if name != "resample":
        yc = fn(x, phase="causal")
        torch.testing.assert_close(fn(x[2:], phase="causal"), yc[2:], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", list(_FUNCS))
def test_gradients(name):
    fn = _FUNCS[name]
    x = torch.randn(1, 2, 48, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))
    if name != "resample":
        assert torch.autograd.gradcheck(lambda t: fn(t, phase="causal"), (x,))
    x32 = torch.randn(2, 3, 300, requires_grad=True)
    fn(x32).square().sum().backward()
    assert x32.grad is not None and bool(torch.isfinite(x32.grad).all()) and float(x32.grad.abs().sum()) > 0


def test_frequency_responses_are_cached():
    x = torch.randn(2, 3, 777)
    notch_filter(x, 999.0, 50.0, quality=17.0)  # a design no other test uses
    before = filtering._response.cache_info()
    designs = filtering._sos.cache_info()
    y = notch_filter(x, 999.0, 50.0, quality=17.0)
    after = filtering._response.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    assert filtering._sos.cache_info().misses == designs.misses
    torch.testing.assert_close(y, notch_filter(x, 999.0, 50.0, quality=17.0))
    notch_filter(x.double(), 999.0, 50.0, quality=17.0)  # another dtype is another entry
    assert filtering._response.cache_info().misses == after.misses + 1


def test_many_notches_cost_one_fft_round_trip(monkeypatch):
    from neurocrane.preprocessing import _fft

    calls = {"rfft": 0, "irfft": 0}
    rfft, irfft = _fft.rfft, _fft.irfft

    def counting_rfft(*a, **k):
        calls["rfft"] += 1
        return rfft(*a, **k)

    def counting_irfft(*a, **k):
        calls["irfft"] += 1
        return irfft(*a, **k)

    monkeypatch.setattr(_fft, "rfft", counting_rfft)
    monkeypatch.setattr(_fft, "irfft", counting_irfft)
    x = torch.randn(2, 8, 4096)
    assert len(notch_frequencies(2048.0, 60.0)) == 17  # every harmonic below Nyquist
    notch_filter(x, 2048.0, 60.0)
    notch_filter(x, 2048.0, 60.0)  # cached response: still only the data's transforms
    assert calls == {"rfft": 2, "irfft": 2}


# -- errors ----------------------------------------------------------------------------------------
def test_function_errors_name_the_problem():
    x = torch.randn(2, 4, 512)
    with pytest.raises(InputError, match=r"high=300 Hz must be below the Nyquist frequency \(256 Hz"):
        bandpass_filter(x, 512.0, 1.0, 300.0)
    with pytest.raises(InputError, match=r"low \(100 Hz\) must be below high \(50 Hz\)"):
        bandpass_filter(x, 512.0, 100.0, 50.0)
    with pytest.raises(InputError, match="low must be a positive finite"):
        bandpass_filter(x, 512.0, float("nan"), 50.0)
    with pytest.raises(InputError, match="sampling_rate must be a positive finite"):
        highpass_filter(x, float("inf"), 1.0)
    with pytest.raises(InputError, match="cutoff must be a positive finite"):
        lowpass_filter(x, 512.0, -3.0)
    with pytest.raises(InputError, match="order must be an integer from 1 to 20"):
        lowpass_filter(x, 512.0, 30.0, order=0)
    with pytest.raises(InputError, match="phase must be 'zero'"):
        lowpass_filter(x, 512.0, 30.0, phase="minimum")
    with pytest.raises(InputError, match=r"expected a tensor of shape \(channels, time\) or \(batch, channels, time\)"):
        bandpass_filter(torch.randn(512), 512.0, 1.0, 50.0)
    with pytest.raises(InputError, match="got shape"):
        notch_filter(torch.randn(1, 2, 3, 512), 512.0, 50.0)
    with pytest.raises(InputDTypeError, match="expected floating-point data"):
        highpass_filter(torch.ones(2, 512, dtype=torch.int16), 512.0, 1.0)
    with pytest.raises(InputDTypeError, match="expected floating-point data"):
        resample(torch.ones(2, 512, dtype=torch.int32), 512.0, 256.0)
    with pytest.raises(InputError, match="new_rate must be a positive finite"):
        resample(x, 512.0, float("nan"))
    with pytest.raises(InputError, match="give either line_freq"):
        notch_filter(x, 512.0)
    with pytest.raises(InputError, match="give either line_freq"):
        notch_filter(x, 512.0, 50.0, freqs=[50.0])
    with pytest.raises(InputError, match=r"freqs=300 Hz must be below the Nyquist"):
        notch_filter(x, 512.0, freqs=[50.0, 300.0])
    with pytest.raises(InputError, match="line_freq=300 Hz is not below the Nyquist"):
        notch_filter(x, 512.0, 300.0)
    with pytest.raises(InputError, match="quality must be a positive finite"):
        notch_filter(x, 512.0, 50.0, quality=0.0)


def test_node_parameter_validation():
    with pytest.raises(TransformValidationError, match=r"(?s)op 'bandpass'.*low \(200 Hz\) must be below high \(100 Hz\)"):
        Bandpass(low=200.0, high=100.0)
    with pytest.raises(TransformValidationError, match="field 'low'"):
        Bandpass(low=float("nan"), high=100.0)
    with pytest.raises(TransformValidationError, match="field 'cutoff'"):
        Highpass(cutoff=float("inf"))
    with pytest.raises(TransformValidationError, match="field 'cutoff'"):
        Lowpass(cutoff=-1.0)
    with pytest.raises(TransformValidationError, match="field 'order'"):
        Lowpass(cutoff=10.0, order=0)
    with pytest.raises(TransformValidationError, match="field 'phase'"):
        Highpass(cutoff=1.0, phase="minimum")
    with pytest.raises(TransformValidationError, match="give either line_freq"):
        Notch()
    with pytest.raises(TransformValidationError, match="n_harmonics applies to line_freq"):
        Notch(freqs=(50.0,), n_harmonics=2)
    with pytest.raises(TransformValidationError, match="freqs is empty"):
        Notch(freqs=())
    with pytest.raises(TransformValidationError, match="field 'new_rate'"):
        Resample(new_rate=0.0)


def test_node_spec_errors_name_op_and_parameter():
    spec = SignalSpec(shape=(None, 4, 4096), sampling_rate=2048.0)
    with pytest.raises(SpecError, match=r"bandpass: high=1500 Hz must be below the Nyquist frequency \(1024 Hz"):
        Bandpass(low=1.0, high=1500.0).output_spec(spec)
    with pytest.raises(SpecError, match="lowpass: cutoff=1024 Hz"):
        Lowpass(cutoff=1024.0).output_spec(spec)
    with pytest.raises(SpecError, match=r"notch: freqs\[1\]=1100 Hz"):
        Notch(freqs=(60.0, 1100.0)).output_spec(spec)
    with pytest.raises(SpecError, match="notch: line_freq=2000 Hz"):
        Notch(line_freq=2000.0).output_spec(spec)
    with pytest.raises(SpecError, match="not a ratio up/down"):
        Resample(new_rate=1000 * math.pi).output_spec(spec)
    with pytest.raises(SpecError, match="needs the sampling rate"):
        Highpass(cutoff=1.0).output_spec(SignalSpec(shape=(None, 4, 4096)))
    spectral = SignalSpec(shape=(None, 4, 10, 50), axes=("batch", "channel", "freq", "time"), sampling_rate=40.0)
    with pytest.raises(SpecError, match="highpass works on data with axes"):
        Highpass(cutoff=1.0).output_spec(spectral)
    # a pipeline collects the problem with the step name, and running refuses the data
    pipe = Pipeline([("hg", Bandpass(low=70.0, high=250.0))])
    with pytest.raises(SpecError, match=r"step 'hg' \(op 'bandpass'\).*high=250 Hz"):
        pipe.validate(SignalSpec(shape=(None, 4, 1000), sampling_rate=400.0))
    with pytest.raises(SpecError, match="high=250 Hz"):
        pipe(torch.randn(2, 4, 1000), sampling_rate=400.0)
    # unknown rate and unknown length: nothing to check yet
    assert Highpass(cutoff=1.0).output_spec(SignalSpec()) == SignalSpec()


# -- nodes in pipelines ----------------------------------------------------------------------------
def _all_nodes() -> list:
    return [
        Notch(line_freq=60.0, n_harmonics=6, quality=30.0, phase="causal"),
        Notch(freqs=(50.0, 100.0), quality=12.0),
        Bandpass(low=70.0, high=250.0, order=5, phase="causal"),
        Highpass(cutoff=0.5, order=2),
        Lowpass(cutoff=300.0),
        Resample(new_rate=500.0, kaiser_beta=6.0),
    ]


def test_pipeline_round_trip_and_run_keeps_metadata():
    pipe = Pipeline(_all_nodes())
    assert Pipeline.from_dict(pipe.to_dict()) == pipe
    assert Pipeline.from_json(pipe.to_json()) == pipe
    assert Pipeline.from_dict(pipe.to_dict()).fingerprint == pipe.fingerprint
    names = ["LA1", "LA2", "LB1"]
    pos = torch.randn(3, 3)
    mask = torch.tensor([[True, True, False], [True, False, True]])
    batch = NeuralBatch(torch.randn(2, 3, 4096), sampling_rate=2048.0, channel_names=names, channel_positions=pos, channel_mask=mask)
    spec = pipe.validate(batch.spec)
    out = pipe(batch)
    assert out.signals.shape == (2, 3, 1000) == spec.shape[:2] + (spec.n_times,)
    assert out.sampling_rate == 500.0 == spec.sampling_rate
    assert out.channel_names == tuple(names)
    assert torch.equal(out.channel_positions, pos) and torch.equal(out.channel_mask, mask)
    # the pipeline computes exactly the functions, step by step
    x = notch_filter(batch.signals, 2048.0, 60.0, n_harmonics=6, phase="causal")
    x = notch_filter(x, 2048.0, freqs=[50.0, 100.0], quality=12.0)
    x = bandpass_filter(x, 2048.0, 70.0, 250.0, order=5, phase="causal")
    x = highpass_filter(x, 2048.0, 0.5, order=2)
    x = lowpass_filter(x, 2048.0, 300.0)
    x = resample(x, 2048.0, 500.0, kaiser_beta=6.0)
    torch.testing.assert_close(out.signals, x)


def test_nodes_want_continuous_input_and_report_settling_time():
    spec = SignalSpec(shape=(None, 8, 1024), sampling_rate=1024.0)
    for node in _all_nodes():
        assert node.wants_continuous
        need = node.min_duration(spec)
        assert need is not None and need > 0
        assert node.min_duration(SignalSpec()) is None  # no rate, no answer
    # a Q=30 notch at 60 Hz rings for about 0.6 s (sum of |h| down to 1 %); a 0.1 Hz high-pass for
    # many seconds
    assert 0.3 < Notch(freqs=(60.0,), phase="causal").min_duration(spec) < 1.0
    assert Highpass(cutoff=0.1).min_duration(spec) > 5.0
    assert Highpass(cutoff=0.1).min_duration(spec) > Highpass(cutoff=1.0).min_duration(spec)
    # zero phase rings at both ends: twice the causal settling time
    zero, causal = Notch(freqs=(60.0,)), Notch(freqs=(60.0,), phase="causal")
    assert zero.min_duration(spec) == pytest.approx(2 * causal.min_duration(spec))
    # resample: the FIR length (20 * max(up, down) + 1 taps at the upsampled rate)
    assert Resample(new_rate=256.0).min_duration(spec) == pytest.approx(81 / 1024.0)
    # invalid for this rate: no settling time (describe reports the problem instead of crashing)
    assert Lowpass(cutoff=600.0).min_duration(spec) is None
    text = Pipeline([Highpass(cutoff=0.1), Lowpass(cutoff=600.0)]).describe(spec)
    assert "needs about" in text and "highpass" in text and "cutoff=600 Hz" in text
    # the pipeline puts them in the recording part
    recording, window = Pipeline([Highpass(cutoff=0.5), Resample(new_rate=512.0), ("z", _zscore())]).split()
    assert recording is not None and len(recording) == 2 and window is not None and window.names == ("z",)


def _zscore():
    from neurocrane.preprocessing import ZScore

    return ZScore()
