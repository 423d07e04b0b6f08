"""Real FFTs and complex magnitudes for the preprocessing ops.

On CPU tensors that need no gradient, SciPy's pocketfft (``scipy.fft``, run with torch's thread
count) and NumPy's complex ``abs`` are several times faster than the torch CPU kernels of the
same transforms (measured in ``benchmarks/ops.py``); everywhere else (CUDA, autograd) the
torch functions are used. Results are torch tensors of the usual dtypes either way
(float32 → complex64, float64 → complex128).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch


def _use_scipy(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled())


def rfft(x: torch.Tensor, n: int | None = None, dim: int = -1) -> torch.Tensor:
    """``torch.fft.rfft`` along ``dim`` (zero-padded or truncated to ``n``)."""
    if _use_scipy(x) and x.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(scipy.fft.rfft(x.detach().numpy(), n=n, axis=dim, workers=torch.get_num_threads()))
    return torch.fft.rfft(x, n=n, dim=dim)


def irfft(spectrum: torch.Tensor, n: int, dim: int = -1) -> torch.Tensor:
    """``torch.fft.irfft`` along ``dim`` to ``n`` real samples."""
    if _use_scipy(spectrum) and spectrum.dtype in (torch.complex64, torch.complex128):
        out = scipy.fft.irfft(spectrum.detach().numpy(), n=n, axis=dim, workers=torch.get_num_threads())
        return torch.from_numpy(out)
    return torch.fft.irfft(spectrum, n=n, dim=dim)


def magnitude(spectrum: torch.Tensor) -> torch.Tensor:
    """``|spectrum|`` of a complex tensor (a real tensor of the matching precision)."""
    if _use_scipy(spectrum):
        return torch.from_numpy(np.abs(spectrum.detach().numpy()))
    return spectrum.abs()
