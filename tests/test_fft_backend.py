"""The CPU fast paths of the FFT helpers and the spectrogram give the torch results, and autograd
still works."""

import numpy as np
import pytest
import scipy.signal
import torch

from neurocrane.errors import InputError
from neurocrane.preprocessing import _fft, compute_spectrogram


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_fast_path_matches_torch(dtype, tol):
    x = torch.randn(3, 5, 1000, dtype=dtype)
    spec = _fft.rfft(x, n=1200)
    expected = torch.fft.rfft(x, n=1200)
    assert spec.dtype == expected.dtype
    torch.testing.assert_close(spec, expected, rtol=tol, atol=tol)
    back = _fft.irfft(spec, n=1200)
    torch.testing.assert_close(back[..., :1000], x, rtol=tol, atol=tol)
    torch.testing.assert_close(_fft.magnitude(spec[..., 3:40]), expected[..., 3:40].abs(), rtol=tol, atol=tol)


def test_autograd_uses_torch_and_gradients_flow():
    x = torch.randn(2, 3, 512, dtype=torch.float64, requires_grad=True)
    out = compute_spectrogram(x, 256.0, window_size=64, hop_length=16)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        fast = compute_spectrogram(x, 256.0, window_size=64, hop_length=16)
    torch.testing.assert_close(fast, out.detach())


# -- STFT fast path: equal to the torch path (unfold + torch.fft.rfft) in every padding case ------
def _torch_reference(x: torch.Tensor, **kw) -> torch.Tensor:
    # with autograd on, compute_spectrogram takes the plain-torch path
    return compute_spectrogram(x.clone().requires_grad_(True), 500.0, **kw).detach()


@pytest.mark.parametrize("n", [7, 130, 333])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("center, pad_end", [(True, True), (True, False), (False, True), (False, False)])
def test_stft_fast_path_matches_torch_path(n, pad_mode, center, pad_end):
    x = torch.randn(2, 3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    for window_size, hop, n_fft, output, freq_range in [
        (16, 5, 16, "magnitude", None),
        (63, 32, 70, "power", (10.0, 100.0)),
        (4, 1, 4, "magnitude", (0.0, 125.0)),
    ]:
        kw = dict(window_size=window_size, hop_length=hop, n_fft=n_fft, center=center, pad_mode=pad_mode,
                  pad_end=pad_end, output=output, freq_range=freq_range, window="hamming")
        try:
            ref = _torch_reference(x, **kw)
        except InputError:  # signal too short for this window or for reflect padding: both paths refuse
            with pytest.raises(InputError):
                compute_spectrogram(x, 500.0, **kw)
            continue
        fast = compute_spectrogram(x, 500.0, **kw)
        assert fast.shape == ref.shape
        torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)


def test_stft_units_split_over_frames_and_workers_give_the_same_result(monkeypatch):
    x = torch.randn(3, 4, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kw = dict(window_size=100, hop_length=7, n_fft=128, pad_mode="reflect", pad_end=True, log=True)
    ref = _torch_reference(x, **kw)
    whole = compute_spectrogram(x, 500.0, **kw)
    # units of a few frames: padding, reflection and frame offsets are computed per unit
    monkeypatch.setattr(_fft, "_UNIT_BYTES", 5 * 128 * 8)
    split = compute_spectrogram(x, 500.0, **kw)
    # log values are O(1-10); two FFT libraries differ by ~1e-16 relative in |X|, which log turns
    # into ~1e-12 absolute for the smallest bins, while a wrong frame offset or padding is O(1)
    torch.testing.assert_close(split, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(whole, ref, rtol=0, atol=1e-10)
    win = torch.hann_window(100, dtype=torch.float64)
    one = _fft.stft_values(x.reshape(12, -1), win, 7, 128, (3, 60), (50, 90), reflect=50, workers=1)
    two = _fft.stft_values(x.reshape(12, -1), win, 7, 128, (3, 60), (50, 90), reflect=50, workers=2)
    assert one.shape == (12, 57, (3000 + 140 - 100) // 7 + 1)
    assert torch.equal(one, two)


def test_stft_fast_path_float32_matches_scipy_and_takes_any_layout():
    x = torch.randn(2, 5, 900).transpose(0, 1)  # non-contiguous (5, 2, 900)
    _, _, z = scipy.signal.stft(x.double().numpy(), fs=500, nperseg=128, noverlap=96, boundary="zeros",
                                padded=False)
    ours = compute_spectrogram(x, 500.0, window_size=128, hop_length=32, scale_by_window=True)
    assert ours.dtype == torch.float32 and ours.shape == z.shape
    np.testing.assert_allclose(ours.numpy(), np.abs(z), rtol=0, atol=1e-6 * np.abs(z).max())
    half = compute_spectrogram(x.half(), 500.0, window_size=128, hop_length=32, scale_by_window=True)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), compute_spectrogram(x.half().float(), 500.0, window_size=128,
                                                                  hop_length=32, scale_by_window=True).half().float())


@pytest.mark.parametrize("s0, width", [(0, 40), (3, 10), (25, 30), (55, 20), (0, 95)])
@pytest.mark.parametrize("reflect", [0, 20])
def test_fill_padded_reads_the_padded_signal(s0, width, reflect):
    src = np.arange(2 * 30, dtype=float).reshape(2, 30) + 1
    left, right = 20, 45
    if reflect:
        padded = torch.nn.functional.pad(torch.from_numpy(src), (20, 20), mode="reflect")
        padded = torch.nn.functional.pad(padded, (0, right - 20)).numpy()
    else:
        padded = np.pad(src, ((0, 0), (left, right)))
    dst = np.full((2, width), np.nan)
    _fft._fill_padded(dst, src, s0, left, reflect)
    np.testing.assert_array_equal(dst, padded[:, s0 : s0 + width])


def test_stft_fast_path_never_builds_the_frames_of_the_whole_input():
    import tracemalloc  # NumPy reports its allocations to tracemalloc; all fast-path buffers are NumPy's

    x = torch.randn(8, 16, 32768)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # two workers, each with its own unit buffers
    try:
        compute_spectrogram(x, 2048.0, window_size=512, hop_length=128)  # warm caches (window, FFT plan)
        tracemalloc.start()
        out = compute_spectrogram(x, 2048.0, window_size=512, hop_length=128)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        torch.set_num_threads(threads)
    out_bytes = out.numel() * 4  # 34 MB
    frames_bytes = 8 * 16 * out.shape[-1] * 512 * 4  # the windowed frames of the whole input: 67 MB
    assert out.shape == (8, 16, 257, 257)
    # the output, plus per worker a unit of frames, its complex spectrum and its magnitudes
    assert peak < out_bytes + 2 * 4 * _fft._UNIT_BYTES + (1 << 20) < frames_bytes
