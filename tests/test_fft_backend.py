"""The CPU fast path of the FFT helpers gives the torch results, and autograd still works."""

import pytest
import torch

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
