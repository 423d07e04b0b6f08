"""Spectral transforms: short-time Fourier spectrogram, Morlet wavelet transform, Hilbert
envelope and band power.

Axes after each step: the spectrogram and the Morlet transform give
``("batch", "channel", "freq", "time")`` (``frequencies`` holds the Hz value of each ``freq``
entry, ``sampling_rate`` the rate of the new time axis); the Hilbert envelope stays
``("batch", "channel", "time")``; band power gives ``("batch", "channel", "feature", "time")``
(one ``feature`` per band) or ``("batch", "channel", "feature")`` when averaged over time.

The spectrogram frames the signal like ``unfold`` and takes real FFTs of the windowed frames,
which reproduces ``scipy.signal.stft`` exactly (same framing, padding and window scaling) and,
with ``center=True, pad_mode="reflect"``, ``torch.stft(center=True)``. On CPU without autograd
this runs in cache-sized units (:func:`neurocrane.preprocessing._fft.stft_values`); with
autograd or on CUDA it is plain torch (``unfold`` + ``torch.fft.rfft``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
import pydantic
import scipy.fft
import torch
import torch.nn.functional as F

from neurocrane.batch import SPECTRAL_AXES, TIME_AXES, NeuralBatch, SignalSpec
from neurocrane.errors import InputError, SpecError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing import _fft
from neurocrane.preprocessing._tensor import (
    batched,
    require_axes,
    require_rate,
    seconds_to_samples,
)

__all__ = [
    "compute_spectrogram",
    "spectrogram_frequencies",
    "Spectrogram",
    "morlet_transform",
    "morlet_wavelet_lengths",
    "MorletTransform",
    "hilbert_envelope",
    "band_power",
    "CANONICAL_BANDS",
    "HilbertEnvelope",
    "BandPower",
]

WindowName = Literal["hann", "hamming", "blackman", "boxcar"]


@lru_cache(maxsize=64)
def _window_cpu(name: str, length: int, dtype: torch.dtype) -> torch.Tensor:
    # periodic windows, like scipy.signal.get_window(name, length) and torch.hann_window(length)
    if name == "hann":
        return torch.hann_window(length, periodic=True, dtype=dtype)
    if name == "hamming":
        return torch.hamming_window(length, periodic=True, dtype=dtype)
    if name == "blackman":
        return torch.blackman_window(length, periodic=True, dtype=dtype)
    if name == "boxcar":
        return torch.ones(length, dtype=dtype)
    raise InputError(f"unknown window {name!r}; use one of hann, hamming, blackman, boxcar.")


def _window(name: str, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return _window_cpu(name, length, dtype).to(device)


def spectrogram_frequencies(
    sampling_rate: float, n_fft: int, freq_range: tuple[float, float] | None = None
) -> tuple[int, int, tuple[float, ...]]:
    """First and one-past-last kept FFT bin, and their frequencies in Hz.

    Bins with ``low <= f <= high`` are kept (both ends inclusive).
    """
    n_bins = n_fft // 2 + 1
    step = sampling_rate / n_fft
    if freq_range is None:
        start, stop = 0, n_bins
    else:
        low, high = freq_range
        start = max(0, math.ceil(low / step - 1e-9))
        stop = min(n_bins, math.floor(high / step + 1e-9) + 1)
        if stop <= start:
            raise InputError(
                f"freq_range {freq_range} Hz contains no FFT bin (bins are {step:g} Hz apart at "
                f"{sampling_rate:g} Hz with n_fft={n_fft}); widen it or increase n_fft."
            )
    return start, stop, tuple(k * step for k in range(start, stop))


def compute_spectrogram(
    neural_data: torch.Tensor,
    sampling_rate: float,
    window_size: int = 256,
    hop_length: int = 128,
    n_fft: int | None = None,
    freq_range: tuple[float, float] | None = None,
    *,
    window: WindowName = "hann",
    center: bool = True,
    pad_mode: Literal["constant", "reflect"] = "constant",
    pad_end: bool = False,
    scale_by_window: bool = False,
    output: Literal["magnitude", "power"] = "magnitude",
    log: bool = False,
    log_eps: float = 1e-10,
) -> torch.Tensor:
    """Compute a spectrogram with the short-time Fourier transform.

    Args:
        neural_data: Shape (batch, channels, time) or (channels, time).
        sampling_rate: Sampling rate in Hz.
        window_size: Window length in samples.
        hop_length: Step between windows in samples.
        n_fft: FFT size (default ``window_size``; larger zero-pads each frame).
        freq_range: Optional ``(low_hz, high_hz)``; bins with low <= f <= high are kept.
        window: Window function (periodic, like SciPy and torch defaults).
        center: Pad ``window_size // 2`` samples at both ends so frame k is centred on
            sample ``k * hop_length`` (scipy ``boundary`` / torch ``center``).
        pad_mode: ``"constant"`` (zeros, as scipy.signal.stft) or ``"reflect"`` (as torch.stft).
        pad_end: Zero-pad the end so the frames cover every sample (scipy ``padded=True``).
        scale_by_window: Divide by the window sum (scipy.signal.stft's ``scaling="spectrum"``).
        output: ``"magnitude"`` (|X|) or ``"power"`` (|X|^2).
        log: Return ``log(value + log_eps)``.
        log_eps: Offset that keeps the log finite.

    Returns:
        Spectrogram of shape (batch, channels, freq_bins, time_bins) (no batch axis for
        unbatched input), in the input's dtype and device.

    Example:
        >>> data = torch.randn(32, 128, 2000)
        >>> spec = compute_spectrogram(data, sampling_rate=1000)
        >>> spec.shape  # (32, 128, freq_bins, time_bins)
        torch.Size([32, 128, 129, 16])
    """
    x, was_unbatched = batched(neural_data, "compute_spectrogram")
    x = _work_dtype(x)
    if not (isinstance(window_size, int) and window_size >= 2):
        raise InputError(f"compute_spectrogram: window_size must be an integer >= 2 samples; got {window_size!r}.")
    if not (isinstance(hop_length, int) and hop_length >= 1):
        raise InputError(f"compute_spectrogram: hop_length must be an integer >= 1 sample; got {hop_length!r}.")
    n_fft = window_size if n_fft is None else n_fft
    if n_fft < window_size:
        raise InputError(f"compute_spectrogram: n_fft ({n_fft}) must be >= window_size ({window_size}).")
    if sampling_rate is None or not math.isfinite(sampling_rate) or sampling_rate <= 0:
        raise InputError(f"compute_spectrogram: sampling_rate must be a positive number of Hz; got {sampling_rate!r}.")
    if output not in ("magnitude", "power"):
        raise InputError(f"compute_spectrogram: output must be 'magnitude' or 'power'; got {output!r}.")
    start, stop, _ = spectrogram_frequencies(float(sampling_rate), n_fft, freq_range)
    n = x.shape[-1]
    left = right = window_size // 2 if center else 0
    if center and pad_mode == "reflect" and n <= left:
        raise InputError(f"compute_spectrogram: reflect padding needs more than {left} samples; got {n}.")
    if pad_end:
        right += (-(n + left + right - window_size) % hop_length) % window_size
    if n + left + right < window_size:
        raise InputError(
            f"compute_spectrogram: signal of {n + left + right} samples (after padding) is shorter than the "
            f"{window_size}-sample window."
        )
    win = _window(window, window_size, x.dtype, x.device)
    if scale_by_window:
        win = win / win.sum()
    if _fft.use_fast_stft(x):
        reflect = left if center and pad_mode == "reflect" else 0
        values = _fft.stft_values(
            x.reshape(-1, n), win, hop_length, n_fft, (start, stop), (left, right), reflect, output == "power"
        )
        values = values.reshape(*x.shape[:-1], *values.shape[-2:])
        if log:
            values = torch.log(values.add_(log_eps), out=values)
    else:
        values = _spectrogram_torch(x, win, hop_length, n_fft, (start, stop), (left, right), pad_mode, output)
        if log:
            values = torch.log(values + log_eps)
        values = values.transpose(-1, -2)
    values = values.to(neural_data.dtype)
    return values.squeeze(0) if was_unbatched else values


def _spectrogram_torch(
    x: torch.Tensor,
    win: torch.Tensor,
    hop_length: int,
    n_fft: int,
    bins: tuple[int, int],
    pad: tuple[int, int],
    pad_mode: str,
    output: str,
) -> torch.Tensor:
    """Torch-only STFT values (B, C, frames, bins), for autograd and non-CPU devices."""
    left, right = pad
    center_pad = left  # equal on both sides; anything beyond it on the right is pad_end zeros
    if center_pad:
        x = F.pad(x, (center_pad, center_pad), mode=pad_mode)
    if right > center_pad:
        x = F.pad(x, (0, right - center_pad))
    frames = x.unfold(-1, win.shape[0], hop_length) * win  # (B, C, frames, window)
    spectrum = torch.fft.rfft(frames, n=n_fft, dim=-1)[..., bins[0] : bins[1]]
    if output == "power":
        return spectrum.real.square() + spectrum.imag.square()
    return spectrum.abs()


class Spectrogram(Transform):
    """Short-time Fourier spectrogram: (batch, channel, time) → (batch, channel, freq, time).

    Lengths are in seconds (converted with the data's sampling rate, rounded to whole samples).
    After the step, ``sampling_rate`` is the frame rate and ``frequencies`` holds the Hz value
    of each kept bin.

    Args:
        window_length: Window length in seconds.
        hop_length: Step between frames in seconds.
        fft_length: FFT length in seconds (default: the window length).
        freq_range: Keep bins with low <= f <= high (Hz).
        window, center, pad_mode, pad_end, scale_by_window, output, log, log_eps: as in
            :func:`compute_spectrogram`.

    Example:
        >>> # BrainBERT's STFT at 2048 Hz: 400-sample window, hop 50, first 40 bins
        >>> Spectrogram(window_length=400 / 2048, hop_length=50 / 2048, freq_range=(0, 200),
        ...             pad_end=True, scale_by_window=True)
    """

    op: ClassVar[str] = "spectrogram"
    window_length: float = pydantic.Field(default=0.25, gt=0)
    hop_length: float = pydantic.Field(default=0.125, gt=0)
    fft_length: float | None = pydantic.Field(default=None, gt=0)
    freq_range: tuple[float, float] | None = None
    window: WindowName = "hann"
    center: bool = True
    pad_mode: Literal["constant", "reflect"] = "constant"
    pad_end: bool = False
    scale_by_window: bool = False
    output: Literal["magnitude", "power"] = "magnitude"
    log: bool = False
    log_eps: float = pydantic.Field(default=1e-10, gt=0)

    @pydantic.model_validator(mode="after")
    def _check(self) -> Spectrogram:
        if self.freq_range is not None:
            low, high = self.freq_range
            if low < 0 or high <= low:
                raise ValueError(f"freq_range must satisfy 0 <= low < high; got {self.freq_range}")
        if self.fft_length is not None and self.fft_length < self.window_length:
            raise ValueError(
                f"fft_length ({self.fft_length} s) must be >= window_length ({self.window_length} s)"
            )
        return self

    def _samples(self, rate: float) -> tuple[int, int, int]:
        win = seconds_to_samples(self.window_length, rate, "window_length", self.op, minimum=2)
        hop = seconds_to_samples(self.hop_length, rate, "hop_length", self.op)
        n_fft = win if self.fft_length is None else seconds_to_samples(self.fft_length, rate, "fft_length", self.op)
        return win, hop, max(n_fft, win)

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        require_axes(spec, self.op, TIME_AXES)
        rate = require_rate(spec, self.op)
        if rate is None:
            return spec.replace(
                shape=(spec.shape[0], spec.shape[1], None, None), axes=SPECTRAL_AXES, frequencies=None
            )
        win, hop, n_fft = self._samples(rate)
        problems = []
        if self.freq_range is not None and self.freq_range[0] > rate / 2:
            problems.append(
                f"freq_range starts at {self.freq_range[0]:g} Hz, above the Nyquist frequency "
                f"({rate / 2:g} Hz) of {rate:g} Hz data."
            )
        try:
            _, _, freqs = spectrogram_frequencies(rate, n_fft, self.freq_range)
        except InputError as err:
            problems.append(str(err))
            freqs = ()
        n = spec.n_times
        frames = None
        if n is not None:
            if self.center and self.pad_mode == "reflect" and n <= win // 2:
                problems.append(
                    f"reflect padding of {win // 2} samples needs more than {win // 2} samples of data; got {n}."
                )
            length = n + (2 * (win // 2) if self.center else 0)
            if self.pad_end:
                length += (-(length - win) % hop) % win
            if length < win:
                problems.append(
                    f"the {self.window_length:g} s window ({win} samples) is longer than the data "
                    f"({n} samples); use shorter windows or longer input."
                )
            else:
                frames = (length - win) // hop + 1
        if problems:
            raise SpecError(problems)
        return spec.replace(
            shape=(spec.shape[0], spec.shape[1], len(freqs), frames),
            axes=SPECTRAL_AXES,
            sampling_rate=rate / hop,
            frequencies=freqs,
        )

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        spec = self.output_spec(batch.spec)
        rate = batch.sampling_rate
        win, hop, n_fft = self._samples(rate)
        values = compute_spectrogram(
            batch.signals,
            rate,
            window_size=win,
            hop_length=hop,
            n_fft=n_fft,
            freq_range=self.freq_range,
            window=self.window,
            center=self.center,
            pad_mode=self.pad_mode,
            pad_end=self.pad_end,
            scale_by_window=self.scale_by_window,
            output=self.output,
            log=self.log,
            log_eps=self.log_eps,
        )
        return batch.replace(
            signals=values, axes=SPECTRAL_AXES, sampling_rate=spec.sampling_rate, frequencies=spec.frequencies
        )


# -- shared checks ------------------------------------------------------------------------------
def _check_rate(sampling_rate: float, op: str) -> float:
    if sampling_rate is None or isinstance(sampling_rate, bool):
        raise InputError(f"{op}: sampling_rate must be a positive number of Hz; got {sampling_rate!r}.")
    rate = float(sampling_rate)
    if not math.isfinite(rate) or rate <= 0:
        raise InputError(f"{op}: sampling_rate must be a positive finite number of Hz; got {sampling_rate!r}.")
    return rate


def _work_dtype(x: torch.Tensor) -> torch.Tensor:
    # torch.fft does not take bfloat16 (and float16 only on CUDA for powers of 2): compute in float32
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


# -- Morlet wavelets ----------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _morlet_bank(
    rate: float, freqs: tuple[float, ...], cycles: tuple[float, ...], zero_mean: bool
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Complex Morlet wavelets as in ``mne.time_frequency.morlet`` (float64), zero-padded at
    both ends to a common odd length so that all share one centre; plus each true length."""
    waves = []
    for f, n_cycles in zip(freqs, cycles, strict=True):
        sigma_t = n_cycles / (2.0 * math.pi * f)
        half = np.arange(0.0, 5.0 * sigma_t, 1.0 / rate)  # same sample grid as MNE
        t = np.concatenate([-half[::-1], half[1:]])
        oscillation = np.exp(2j * math.pi * f * t)
        if zero_mean:
            # admissibility correction: subtract the mean of the Gaussian-weighted oscillation
            oscillation = oscillation - math.exp(-2.0 * (math.pi * f * sigma_t) ** 2)
        w = oscillation * np.exp(-(t**2) / (2.0 * sigma_t**2))
        waves.append(w / (math.sqrt(0.5) * np.linalg.norm(w)))
    longest = max(len(w) for w in waves)
    bank = np.zeros((len(waves), longest), dtype=np.complex128)
    for i, w in enumerate(waves):
        start = (longest - len(w)) // 2
        bank[i, start : start + len(w)] = w
    return bank, tuple(len(w) for w in waves)


def _check_frequencies(
    frequencies: Sequence[float], n_cycles: float | Sequence[float], rate: float, op: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    freqs = tuple(float(f) for f in np.atleast_1d(np.asarray(frequencies, dtype=float)))
    if not freqs:
        raise InputError(f"{op}: frequencies must list at least one frequency in Hz; got an empty list.")
    bad = [f for f in freqs if not math.isfinite(f) or f <= 0]
    if bad:
        raise InputError(f"{op}: frequencies must be positive finite numbers of Hz; got {bad}.")
    above = [f for f in freqs if f > rate / 2]
    if above:
        raise InputError(
            f"{op}: frequencies {above} Hz are above the Nyquist frequency ({rate / 2:g} Hz) of "
            f"{rate:g} Hz data; remove them or use data with a higher sampling rate."
        )
    cycles = tuple(float(c) for c in np.atleast_1d(np.asarray(n_cycles, dtype=float)))
    if len(cycles) == 1:
        cycles = cycles * len(freqs)
    if len(cycles) != len(freqs):
        raise InputError(
            f"{op}: n_cycles must be one number or one per frequency; got {len(cycles)} values "
            f"for {len(freqs)} frequencies."
        )
    bad = [c for c in cycles if not math.isfinite(c) or c <= 0]
    if bad:
        raise InputError(f"{op}: n_cycles must be positive finite numbers; got {bad}.")
    return freqs, cycles


def morlet_wavelet_lengths(
    sampling_rate: float, frequencies: Sequence[float], n_cycles: float | Sequence[float] = 7.0
) -> tuple[int, ...]:
    """Length in samples of each Morlet wavelet (±5 standard deviations of its Gaussian).

    Args:
        sampling_rate: Sampling rate in Hz.
        frequencies: Centre frequencies in Hz.
        n_cycles: Cycles per wavelet, one number or one per frequency.

    Returns:
        One odd length per frequency; the signal must be at least this long.

    Example:
        >>> morlet_wavelet_lengths(1000.0, [10.0], 7.0)
        (1115,)
    """
    rate = _check_rate(sampling_rate, "morlet_wavelet_lengths")
    freqs, cycles = _check_frequencies(frequencies, n_cycles, rate, "morlet_wavelet_lengths")
    return _morlet_bank(rate, freqs, cycles, True)[1]


def morlet_transform(
    neural_data: torch.Tensor,
    sampling_rate: float,
    frequencies: Sequence[float],
    n_cycles: float | Sequence[float] = 7.0,
    output: Literal["power", "magnitude", "complex"] = "power",
    *,
    zero_mean: bool = True,
    decim: int = 1,
) -> torch.Tensor:
    """Continuous wavelet transform with complex Morlet wavelets (FFT convolution).

    Reproduces ``mne.time_frequency.tfr_array_morlet(data, sfreq, freqs, n_cycles,
    zero_mean=zero_mean, use_fft=True, decim=decim, output=...)``: same wavelets (Gaussian of
    standard deviation ``n_cycles / (2 pi f)`` seconds, cut at ±5 standard deviations,
    normalized to norm ``sqrt(2)``) and the same "same"-length linear convolution with zeros
    outside the signal, so values near the edges (half a wavelet) feel the zero padding.

    ``zero_mean=True`` (MNE's default since 1.8) subtracts the small DC offset of each wavelet
    so that it is admissible (a constant signal gives exactly 0); with few cycles at low
    frequencies this matters, with 7 cycles it changes values by ~1e-9.

    Args:
        neural_data: Shape (batch, channels, time) or (channels, time).
        sampling_rate: Sampling rate in Hz.
        frequencies: Wavelet centre frequencies in Hz (each > 0 and <= Nyquist).
        n_cycles: Cycles per wavelet: one number, or one per frequency.
        output: ``"power"`` (|W|^2, as MNE's ``output="power"``), ``"magnitude"`` (|W|) or
            ``"complex"``.
        zero_mean: Make each wavelet zero-mean (see above).
        decim: Keep every ``decim``-th output sample (after the transform, as MNE does).

    Returns:
        Shape (batch, channels, freqs, ceil(time / decim)), or (channels, freqs, ...) for
        unbatched input; real in the input's dtype, or complex (complex64/complex128) for
        ``output="complex"``. On the input's device.

    Raises:
        InputError: frequencies above Nyquist or not positive, ``n_cycles <= 0``, a wavelet
            longer than the signal, a bad ``decim`` or ``output``.

    Example:
        >>> x = torch.randn(2, 4, 2000)
        >>> morlet_transform(x, 1000.0, [10.0, 20.0, 40.0], n_cycles=5).shape
        torch.Size([2, 4, 3, 2000])
    """
    op = "morlet_transform"
    x, was_unbatched = batched(neural_data, op)
    rate = _check_rate(sampling_rate, op)
    freqs, cycles = _check_frequencies(frequencies, n_cycles, rate, op)
    if output not in ("power", "magnitude", "complex"):
        raise InputError(f"{op}: output must be 'power', 'magnitude' or 'complex'; got {output!r}.")
    if isinstance(decim, bool) or not isinstance(decim, int) or decim < 1:
        raise InputError(f"{op}: decim must be an integer >= 1; got {decim!r}.")
    bank, lengths = _morlet_bank(rate, freqs, cycles, bool(zero_mean))
    n = x.shape[-1]
    if max(lengths) > n:
        worst = freqs[lengths.index(max(lengths))]
        raise InputError(
            f"{op}: the {worst:g} Hz wavelet is {max(lengths)} samples long ({max(lengths) / rate:.3g} s) but "
            f"the signal has only {n} samples; use longer input, fewer n_cycles or higher frequencies."
        )
    work = _work_dtype(x)
    cdtype = torch.complex128 if work.dtype == torch.float64 else torch.complex64
    n_fft = scipy.fft.next_fast_len(n + bank.shape[1] - 1)
    wavelets_f = torch.fft.fft(torch.as_tensor(bank, device=x.device).to(cdtype), n=n_fft)  # (F, n_fft)
    signal_f = torch.fft.fft(work, n=n_fft).unsqueeze(-2)  # (B, C, 1, n_fft)
    start = (bank.shape[1] - 1) // 2
    # chunk over frequencies so the (B, C, F, n_fft) complex product stays moderate in memory
    chunk = max(1, (1 << 25) // max(1, signal_f.shape[0] * signal_f.shape[1] * n_fft))
    parts = []
    for i in range(0, len(freqs), chunk):
        conv = torch.fft.ifft(signal_f * wavelets_f[i : i + chunk], dim=-1)
        parts.append(conv[..., start : start + n : decim])
    coefs = torch.cat(parts, dim=-2) if len(parts) > 1 else parts[0]
    if output == "complex":
        out = coefs
    elif output == "power":
        out = (coefs.real.square() + coefs.imag.square()).to(x.dtype)
    else:
        out = coefs.abs().to(x.dtype)
    return out.squeeze(0) if was_unbatched else out


class MorletTransform(Transform):
    """Morlet wavelet transform: (batch, channel, time) → (batch, channel, freq, time).

    Matches ``mne.time_frequency.tfr_array_morlet`` (see :func:`morlet_transform`). After the
    step, ``frequencies`` holds the wavelet frequencies and ``sampling_rate`` is the input rate
    divided by ``decim``.

    Args:
        frequencies: Wavelet centre frequencies in Hz.
        n_cycles: Cycles per wavelet: one number, or one per frequency.
        output: ``"power"`` or ``"magnitude"``.
        zero_mean: Make each wavelet zero-mean (MNE's default).
        decim: Keep every ``decim``-th time point.
        log: Return ``log(value + log_eps)``.
        log_eps: Offset that keeps the log finite.

    Example:
        >>> MorletTransform(frequencies=(4.0, 8.0, 16.0, 32.0, 64.0), n_cycles=5.0, decim=4)
    """

    op: ClassVar[str] = "morlet"
    frequencies: tuple[float, ...]
    n_cycles: float | tuple[float, ...] = 7.0
    output: Literal["power", "magnitude"] = "power"
    zero_mean: bool = True
    decim: int = pydantic.Field(default=1, ge=1)
    log: bool = False
    log_eps: float = pydantic.Field(default=1e-10, gt=0)

    @pydantic.model_validator(mode="after")
    def _check(self) -> MorletTransform:
        if not self.frequencies:
            raise ValueError("frequencies must list at least one frequency in Hz, e.g. (4.0, 8.0, 16.0)")
        if any(f <= 0 for f in self.frequencies):
            raise ValueError(f"frequencies must be > 0 Hz; got {self.frequencies}")
        cycles = self.n_cycles if isinstance(self.n_cycles, tuple) else (self.n_cycles,)
        if any(c <= 0 for c in cycles):
            raise ValueError(f"n_cycles must be > 0; got {self.n_cycles}")
        if len(cycles) not in (1, len(self.frequencies)):
            raise ValueError(
                f"n_cycles must be one number or one per frequency ({len(self.frequencies)}); got {len(cycles)}"
            )
        return self

    def _wavelet_samples(self, rate: float) -> int:
        return max(morlet_wavelet_lengths(rate, self.frequencies, self.n_cycles))

    def min_duration(self, spec: SignalSpec) -> float | None:
        rate = spec.sampling_rate
        if rate is None or max(self.frequencies) > rate / 2:
            return None
        return self._wavelet_samples(rate) / rate

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        require_axes(spec, self.op, TIME_AXES)
        rate = require_rate(spec, self.op)
        if rate is None:
            return spec.replace(
                shape=(spec.shape[0], spec.shape[1], len(self.frequencies), None),
                axes=SPECTRAL_AXES,
                frequencies=self.frequencies,
            )
        above = [f for f in self.frequencies if f > rate / 2]
        if above:
            raise SpecError(
                f"{self.op}: frequencies {above} Hz are above the Nyquist frequency ({rate / 2:g} Hz) "
                f"of {rate:g} Hz data."
            )
        n = spec.n_times
        if n is not None and self._wavelet_samples(rate) > n:
            raise SpecError(
                f"{self.op}: the longest wavelet ({self._wavelet_samples(rate)} samples, lowest frequency "
                f"{min(self.frequencies):g} Hz with n_cycles={self.n_cycles}) is longer than the data ({n} "
                "samples); use longer windows, fewer cycles or higher frequencies."
            )
        return spec.replace(
            shape=(spec.shape[0], spec.shape[1], len(self.frequencies), None if n is None else -(-n // self.decim)),
            axes=SPECTRAL_AXES,
            sampling_rate=rate / self.decim,
            frequencies=self.frequencies,
        )

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        spec = self.output_spec(batch.spec)
        values = morlet_transform(
            batch.signals,
            batch.sampling_rate,
            self.frequencies,
            self.n_cycles,
            self.output,
            zero_mean=self.zero_mean,
            decim=self.decim,
        )
        if self.log:
            values = torch.log(values + self.log_eps)
        return batch.replace(
            signals=values, axes=SPECTRAL_AXES, sampling_rate=spec.sampling_rate, frequencies=spec.frequencies
        )


# -- Hilbert envelope and band power ------------------------------------------------------------
#: Canonical iEEG bands as (name, low Hz, high Hz); each band covers low <= f < high.
CANONICAL_BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 70.0),
    ("high_gamma", 70.0, 150.0),
)

BandSpec = Sequence[tuple[float, float]] | Sequence[tuple[str, float, float]] | Mapping[str, tuple[float, float]]


def _band_edges(bands: BandSpec, op: str) -> list[tuple[float, float]]:
    """Accept a name → (low, high) mapping, (name, low, high) triples or (low, high) pairs."""
    if isinstance(bands, Mapping):
        items = list(bands.values())
    else:
        items = [tuple(b)[-2:] if len(tuple(b)) == 3 else tuple(b) for b in bands]
    if not items:
        raise InputError(f"{op}: bands must list at least one (low_hz, high_hz) band; got an empty list.")
    edges = []
    for band in items:
        if len(band) != 2:
            raise InputError(f"{op}: each band must be (low_hz, high_hz) or (name, low_hz, high_hz); got {band!r}.")
        low, high = float(band[0]), float(band[1])
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high <= low:
            raise InputError(f"{op}: a band must satisfy 0 <= low < high (finite Hz); got ({low:g}, {high:g}).")
        edges.append((low, high))
    return edges


def _check_bands_fit(edges: list[tuple[float, float]], rate: float, transition: float, op: str) -> None:
    if not math.isfinite(transition) or transition < 0:
        raise InputError(f"{op}: transition must be a finite width >= 0 Hz; got {transition!r}.")
    above = [e for e in edges if e[1] > rate / 2]
    if above:
        raise InputError(
            f"{op}: bands {above} reach above the Nyquist frequency ({rate / 2:g} Hz) of {rate:g} Hz data; "
            "lower their upper edge or use data with a higher sampling rate."
        )
    narrow = [e for e in edges if transition > e[1] - e[0]]
    if narrow:
        raise InputError(
            f"{op}: transition ({transition:g} Hz) is wider than bands {narrow}; use a transition at most "
            "as wide as the narrowest band."
        )


def _rise(f: np.ndarray, edge: float, transition: float, tol: float) -> np.ndarray:
    """Gain rising from 0 to 1 around ``edge`` (0.5 at the edge; a step when transition is 0)."""
    if transition == 0:
        return (f >= edge - tol).astype(float)
    u = np.clip((f - (edge - transition / 2)) / transition, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def _analytic_gains(n: int, rate: float, edges: list[tuple[float, float]] | None, transition: float) -> np.ndarray:
    """(bands, n) FFT multipliers: analytic signal (2 on positive frequencies, 1 at DC and
    Nyquist, 0 on negative ones, as scipy.signal.hilbert) times each band's gain."""
    h = np.zeros(n)
    h[0] = 1.0
    h[1 : (n + 1) // 2] = 2.0
    if n % 2 == 0:
        h[n // 2] = 1.0
    if edges is None:
        return h[None, :]
    f = np.abs(np.fft.fftfreq(n, d=1.0 / rate))
    tol = 1e-9 * rate / n
    gains = []
    for low, high in edges:
        lower = np.ones(n) if low <= 0 else _rise(f, low, transition, tol)
        upper = np.ones(n) if high >= rate / 2 else 1.0 - _rise(f, high, transition, tol)
        gains.append(h * lower * upper)
    return np.stack(gains)


def _band_analytic(
    x: torch.Tensor, rate: float, edges: list[tuple[float, float]] | None, transition: float
) -> torch.Tensor:
    """Analytic signal of each band of ``x`` (B, C, T): complex (B, C, bands, T)."""
    work = _work_dtype(x)
    n = work.shape[-1]
    gains = torch.as_tensor(_analytic_gains(n, rate, edges, transition), dtype=work.dtype, device=x.device)
    spectrum = torch.fft.fft(work, dim=-1).unsqueeze(-2)  # (B, C, 1, T)
    return torch.fft.ifft(spectrum * gains, dim=-1)


def hilbert_envelope(
    neural_data: torch.Tensor,
    sampling_rate: float,
    band: tuple[float, float] | None = (70.0, 150.0),
    *,
    transition: float = 0.0,
) -> torch.Tensor:
    """Analytic amplitude (envelope) of a frequency band: band-pass, then |analytic signal|.

    The band-pass and the Hilbert transform are one multiplication in the frequency domain of
    a single FFT along time: frequencies ``low <= f < high`` are kept (with ``transition > 0``
    the gain instead follows a raised cosine that is 0.5 at each edge and spans
    ``transition`` Hz, which rings less). With ``band=None`` this is exactly
    ``abs(scipy.signal.hilbert(x))``. The FFT is circular: the first and last few cycles of
    the lowest band frequency mix with the other end of the window, so trim edges or use
    windows that are long compared to ``1 / low``.

    Args:
        neural_data: Shape (batch, channels, time) or (channels, time).
        sampling_rate: Sampling rate in Hz.
        band: ``(low_hz, high_hz)``; default high gamma 70–150 Hz; ``None`` for no band-pass.
        transition: Width in Hz of the raised-cosine band edges (0 = ideal filter).

    Returns:
        Envelope with the input's shape, dtype and device (``time`` stays the last axis).

    Raises:
        InputError: band above Nyquist, ``low >= high``, negative or too wide ``transition``.

    Example:
        >>> x = torch.randn(2, 4, 1000)
        >>> hilbert_envelope(x, 1000.0, (70.0, 150.0)).shape
        torch.Size([2, 4, 1000])
    """
    op = "hilbert_envelope"
    x, was_unbatched = batched(neural_data, op)
    rate = _check_rate(sampling_rate, op)
    edges = None if band is None else _band_edges([band], op)
    _check_bands_fit(edges or [], rate, transition, op)
    env = _band_analytic(x, rate, edges, transition).squeeze(-2).abs().to(x.dtype)
    return env.squeeze(0) if was_unbatched else env


def band_power(
    neural_data: torch.Tensor,
    sampling_rate: float,
    bands: BandSpec = CANONICAL_BANDS,
    *,
    average: bool = False,
    transition: float = 0.0,
    log: bool = False,
    log_eps: float = 1e-10,
) -> torch.Tensor:
    """Power in each frequency band: the squared Hilbert envelope of the band-passed signal.

    Every band is filtered from the same FFT (see :func:`hilbert_envelope`; bands cover
    ``low <= f < high``, so adjacent bands split the spectrum without double counting). For a
    sinusoid of amplitude ``a`` inside a band, the band's power is ``a**2`` at every time
    point (twice the mean square of the band-limited signal).

    Args:
        neural_data: Shape (batch, channels, time) or (channels, time).
        sampling_rate: Sampling rate in Hz.
        bands: ``(name, low_hz, high_hz)`` triples (default :data:`CANONICAL_BANDS`: delta,
            theta, alpha, beta, gamma, high gamma), ``(low, high)`` pairs, or a mapping
            name → ``(low, high)``. Each must lie below Nyquist.
        average: Average over time and drop the time axis.
        transition: Width in Hz of raised-cosine band edges (0 = ideal filter).
        log: Return ``log(power + log_eps)``.
        log_eps: Offset that keeps the log finite.

    Returns:
        (batch, channels, bands, time), or (batch, channels, bands) with ``average=True``;
        without the batch axis for (channels, time) input. Input dtype and device.

    Raises:
        InputError: empty band list, a band above Nyquist or with ``low >= high``.

    Example:
        >>> x = torch.randn(2, 4, 2000)
        >>> band_power(x, 1000.0).shape  # six canonical bands
        torch.Size([2, 4, 6, 2000])
        >>> band_power(x, 1000.0, [(8.0, 13.0)], average=True).shape
        torch.Size([2, 4, 1])
    """
    op = "band_power"
    x, was_unbatched = batched(neural_data, op)
    rate = _check_rate(sampling_rate, op)
    edges = _band_edges(bands, op)
    _check_bands_fit(edges, rate, transition, op)
    analytic = _band_analytic(x, rate, edges, transition)
    power = analytic.real.square() + analytic.imag.square()
    if average:
        power = power.mean(dim=-1)
    if log:
        power = torch.log(power + log_eps)
    power = power.to(x.dtype)
    return power.squeeze(0) if was_unbatched else power


class HilbertEnvelope(Transform):
    """Band-limited analytic amplitude (e.g. the high-gamma envelope); time-domain in and out.

    Axes, sampling rate and channels are unchanged. See :func:`hilbert_envelope`.

    Args:
        band: ``(low_hz, high_hz)``; ``None`` for the envelope of the whole signal.
        transition: Width in Hz of raised-cosine band edges (0 = ideal filter).

    Example:
        >>> HilbertEnvelope(band=(70.0, 150.0), transition=5.0)
    """

    op: ClassVar[str] = "hilbert_envelope"
    band: tuple[float, float] | None = (70.0, 150.0)
    transition: float = pydantic.Field(default=0.0, ge=0)

    @pydantic.model_validator(mode="after")
    def _check(self) -> HilbertEnvelope:
        if self.band is not None:
            low, high = self.band
            if low < 0 or high <= low:
                raise ValueError(f"band must satisfy 0 <= low < high; got {self.band}")
            if self.transition > high - low:
                raise ValueError(f"transition ({self.transition} Hz) is wider than the band {self.band}")
        return self

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        require_axes(spec, self.op, TIME_AXES)
        rate = require_rate(spec, self.op)
        if rate is not None and self.band is not None and self.band[1] > rate / 2:
            raise SpecError(
                f"{self.op}: band {self.band} Hz reaches above the Nyquist frequency ({rate / 2:g} Hz) of "
                f"{rate:g} Hz data."
            )
        return spec

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        self.output_spec(batch.spec)
        env = hilbert_envelope(batch.signals, batch.sampling_rate, self.band, transition=self.transition)
        return batch.replace(signals=env)


class BandPower(Transform):
    """Power per frequency band: (batch, channel, time) → (batch, channel, feature, time).

    The ``feature`` axis holds one entry per band, in the order given; with ``average=True``
    the time axis is averaged away, giving (batch, channel, feature) and ``sampling_rate``
    ``None``. ``frequencies`` is ``None`` (bands are not single frequencies). See
    :func:`band_power`.

    Args:
        bands: ``(name, low_hz, high_hz)`` triples; names must be unique.
        average: Average over time.
        transition: Width in Hz of raised-cosine band edges (0 = ideal filter).
        log: Return ``log(power + log_eps)``.
        log_eps: Offset that keeps the log finite.

    Example:
        >>> BandPower(bands=(("theta", 4.0, 8.0), ("high_gamma", 70.0, 150.0)), log=True)
    """

    op: ClassVar[str] = "band_power"
    bands: tuple[tuple[str, float, float], ...] = CANONICAL_BANDS
    average: bool = False
    transition: float = pydantic.Field(default=0.0, ge=0)
    log: bool = False
    log_eps: float = pydantic.Field(default=1e-10, gt=0)

    @pydantic.model_validator(mode="after")
    def _check(self) -> BandPower:
        if not self.bands:
            raise ValueError("bands must list at least one (name, low_hz, high_hz) band, e.g. (('alpha', 8, 13),)")
        names = [b[0] for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError(f"band names must be unique; got {names}")
        for name, low, high in self.bands:
            if low < 0 or high <= low:
                raise ValueError(f"band '{name}' must satisfy 0 <= low < high; got ({low}, {high})")
            if self.transition > high - low:
                raise ValueError(f"transition ({self.transition} Hz) is wider than band '{name}' ({low}-{high} Hz)")
        return self

    @property
    def band_names(self) -> tuple[str, ...]:
        """Name of each entry of the ``feature`` axis."""
        return tuple(b[0] for b in self.bands)

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        require_axes(spec, self.op, TIME_AXES)
        rate = require_rate(spec, self.op)
        if rate is not None:
            above = [name for name, _, high in self.bands if high > rate / 2]
            if above:
                raise SpecError(
                    f"{self.op}: bands {above} reach above the Nyquist frequency ({rate / 2:g} Hz) of {rate:g} Hz data."
                )
        if self.average:
            return spec.replace(
                shape=(spec.shape[0], spec.shape[1], len(self.bands)),
                axes=("batch", "channel", "feature"),
                sampling_rate=None,
                frequencies=None,
            )
        return spec.replace(
            shape=(spec.shape[0], spec.shape[1], len(self.bands), spec.shape[2]),
            axes=("batch", "channel", "feature", "time"),
            frequencies=None,
        )

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        spec = self.output_spec(batch.spec)
        power = band_power(
            batch.signals,
            batch.sampling_rate,
            self.bands,
            average=self.average,
            transition=self.transition,
            log=self.log,
            log_eps=self.log_eps,
        )
        return batch.replace(signals=power, axes=spec.axes, sampling_rate=spec.sampling_rate, frequencies=None)
