"""Real FFTs, complex magnitudes and the short-time Fourier transform for the preprocessing ops.

On CPU tensors that need no gradient, SciPy's pocketfft (``scipy.fft``, run with torch's thread
count) and NumPy's complex ``abs`` are several times faster on whole large tensors than the
torch CPU kernels of the same transforms (measured in ``benchmarks/ops.py``); everywhere else
(CUDA, autograd) the torch functions are used. Results are torch tensors of the usual dtypes
either way (float32 → complex64, float64 → complex128).

:func:`stft_values` is the CPU spectrogram: it never builds the (overlapping) frames of the
whole input, but pads, windows and transforms cache-sized units, spread over torch's thread
count by a thread pool of its own. Each unit's FFT is pocketfft on one thread: torch's MKL
``rfft`` is ~1.4x faster per unit when cores are idle, but its OpenMP team spins at every call,
and with the cores shared by other processes a call then takes a whole scheduler time slice
(measured 2-15 ms instead of 0.2 ms per unit).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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


# -- short-time Fourier transform, CPU fast path --------------------------------------------------
# Bytes of windowed frames per work unit. Units stay cache-resident (with their spectrum), so no
# frame tensor of the whole input is ever built; much smaller units pay more Python overhead per
# sample, larger ones spill to memory (1 MiB measured best on (8192, 4096) rows, 512/128 frames).
_UNIT_BYTES = 1 << 20


def use_fast_stft(x: torch.Tensor) -> bool:
    """Whether :func:`stft_values` applies (CPU float32/float64 data that needs no gradient)."""
    return _use_scipy(x) and x.dtype in (torch.float32, torch.float64)


def _fill_padded(dst: np.ndarray, src: np.ndarray, s0: int, left: int, right_reflect: int) -> None:
    """Copy samples ``s0 .. s0 + dst.shape[-1]`` of the padded rows ``src`` into ``dst``.

    The padded row is ``left`` samples (reflected when ``right_reflect`` > 0, else zeros), the
    ``n`` samples of ``src``, ``right_reflect`` reflected samples, then zeros.
    """
    n = src.shape[-1]
    width = dst.shape[-1]
    i0, i1 = s0 - left, s0 - left + width  # range in unpadded sample indices
    reflect = right_reflect > 0
    # left padding: i in [i0, min(i1, 0))
    a, b = i0, min(i1, 0)
    if b > a:
        if reflect:  # x[-i] for i = a .. b-1
            dst[:, : b - a] = src[:, 1 - b : 1 - a][:, ::-1]
        else:
            dst[:, : b - a] = 0
    a, b = max(i0, 0), min(i1, n)
    if b > a:
        dst[:, a - i0 : b - i0] = src[:, a:b]
    a, b = max(i0, n), min(i1, n + right_reflect)
    if b > a:  # x[2n - 2 - i]
        lo, hi = 2 * n - 2 - (b - 1), 2 * n - 2 - a
        dst[:, a - i0 : b - i0] = src[:, lo : hi + 1][:, ::-1]
    a, b = max(i0, n + right_reflect), i1
    if b > a:
        dst[:, a - i0 : b - i0] = 0


def stft_values(
    x: torch.Tensor,
    window: torch.Tensor,
    hop: int,
    n_fft: int,
    bins: tuple[int, int],
    pad: tuple[int, int],
    reflect: int = 0,
    power: bool = False,
    workers: int | None = None,
) -> torch.Tensor:
    """Magnitude (or power) of the short-time Fourier transform of CPU rows, frame by frame.

    Equivalent to padding ``x``, framing it with ``unfold(-1, len(window), hop)``, multiplying by
    ``window``, taking ``torch.fft.rfft(n=n_fft)`` and keeping bins ``bins[0]:bins[1]``, but done
    in cache-sized units of rows and frames (padding included) straight into the final layout,
    and spread over torch's thread count.

    Args:
        x: (rows, time) float32 or float64 CPU tensor (see :func:`use_fast_stft`).
        window: (window_length,) window in ``x``'s dtype.
        hop: Step between frames in samples.
        n_fft: FFT size (>= window length; frames are zero-padded to it).
        bins: First and one-past-last kept FFT bin.
        pad: Samples added before and after the signal.
        reflect: How many of the padded samples at each end are reflections of the signal
            (``torch.nn.functional.pad(mode="reflect")``); the rest are zeros.
        power: Return ``|X|^2`` instead of ``|X|``.
        workers: Threads working on separate units (default: torch's thread count).

    Returns:
        (rows, bins, frames) tensor in ``x``'s dtype.

    Example:
        >>> x = torch.randn(4, 1000)
        >>> stft_values(x, torch.hann_window(128), 32, 128, (0, 65), (64, 64)).shape
        torch.Size([4, 65, 32])
    """
    rows, n = x.shape
    width = window.shape[0]
    left, right = pad
    n_frames = (left + n + right - width) // hop + 1
    start, stop = bins
    src = x.detach().contiguous().numpy()
    win = window.detach().contiguous().numpy()
    dtype = src.dtype
    # NumPy allocates large arrays on transparent huge pages where the kernel allows it: first
    # touching a fresh (rows, bins, frames) output then costs ~5x less than torch.empty's 4 KiB pages
    out = np.empty((rows, stop - start, n_frames), dtype)
    out_t = torch.from_numpy(out)
    # work units: blocks of rows, and of frames when a single row is larger than a unit
    frame_bytes = n_fft * dtype.itemsize
    frames_per_unit = max(1, min(n_frames, _UNIT_BYTES // frame_bytes))
    rows_per_unit = max(1, min(rows, _UNIT_BYTES // (frame_bytes * frames_per_unit)))
    units = [
        (r0, f0) for r0 in range(0, rows, rows_per_unit) for f0 in range(0, n_frames, frames_per_unit)
    ]

    def work(my_units: list[tuple[int, int]]) -> None:
        span = (frames_per_unit - 1) * hop + width
        buf = np.empty((rows_per_unit, span), dtype)
        framed = np.lib.stride_tricks.as_strided(  # overlapping frames of buf, no copy
            buf, (rows_per_unit, frames_per_unit, width), (buf.strides[0], hop * buf.strides[1], buf.strides[1]),
            writeable=False,
        )
        frames = np.zeros((rows_per_unit, frames_per_unit, n_fft), dtype)  # zero tail when n_fft > width
        values = np.empty((rows_per_unit, frames_per_unit, stop - start), dtype)
        for r0, f0 in my_units:
            nr, nf = min(rows_per_unit, rows - r0), min(frames_per_unit, n_frames - f0)
            used = (nf - 1) * hop + width
            _fill_padded(buf[:nr, :used], src[r0 : r0 + nr], f0 * hop, left, reflect)
            np.multiply(framed[:nr, :nf], win, out=frames[:nr, :nf, :width])
            kept = scipy.fft.rfft(frames[:nr, :nf], axis=-1, workers=1)[..., start:stop]
            v = values[:nr, :nf]
            if power:
                np.square(kept.real, out=v)
                v += np.square(kept.imag)
            else:
                np.abs(kept, out=v)
            out[r0 : r0 + nr, :, f0 : f0 + nf] = v.transpose(0, 2, 1)

    workers = max(1, min(workers or torch.get_num_threads(), len(units)))
    if workers == 1:
        work(units)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, [units[i::workers] for i in range(workers)]))
    return out_t
