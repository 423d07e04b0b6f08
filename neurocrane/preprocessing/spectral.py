"""Spectral transforms: short-time Fourier spectrogram (Morlet wavelets, Hilbert envelope and
band power live beside it).

The spectrogram frames the signal with ``unfold`` and takes one batched real FFT, which
reproduces ``scipy.signal.stft`` exactly (same framing, padding and window scaling) and, with
``center=True, pad_mode="reflect"``, ``torch.stft(center=True)``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import ClassVar, Literal

import pydantic
import torch
import torch.nn.functional as F

from neurocrane.batch import SPECTRAL_AXES, TIME_AXES, NeuralBatch, SignalSpec
from neurocrane.errors import InputError, SpecError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing._tensor import (
    batched,
    require_axes,
    require_rate,
    seconds_to_samples,
)

__all__ = ["compute_spectrogram", "spectrogram_frequencies", "Spectrogram"]

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
    if not (isinstance(window_size, int) and window_size >= 2):
        raise InputError(f"compute_spectrogram: window_size must be an integer >= 2 samples; got {window_size!r}.")
    if not (isinstance(hop_length, int) and hop_length >= 1):
        raise InputError(f"compute_spectrogram: hop_length must be an integer >= 1 sample; got {hop_length!r}.")
    n_fft = window_size if n_fft is None else n_fft
    if n_fft < window_size:
        raise InputError(f"compute_spectrogram: n_fft ({n_fft}) must be >= window_size ({window_size}).")
    if sampling_rate is None or not math.isfinite(sampling_rate) or sampling_rate <= 0:
        raise InputError(f"compute_spectrogram: sampling_rate must be a positive number of Hz; got {sampling_rate!r}.")
    start, stop, _ = spectrogram_frequencies(float(sampling_rate), n_fft, freq_range)
    if center:
        pad = window_size // 2
        if pad_mode == "reflect" and x.shape[-1] <= pad:
            raise InputError(
                f"compute_spectrogram: reflect padding needs more than {pad} samples; got {x.shape[-1]}."
            )
        x = F.pad(x, (pad, pad), mode=pad_mode)
    if pad_end:
        extra = (-(x.shape[-1] - window_size) % hop_length) % window_size
        if extra:
            x = F.pad(x, (0, extra))
    if x.shape[-1] < window_size:
        raise InputError(
            f"compute_spectrogram: signal of {x.shape[-1]} samples (after padding) is shorter than the "
            f"{window_size}-sample window."
        )
    win = _window(window, window_size, x.dtype, x.device)
    if scale_by_window:
        win = win / win.sum()
    frames = x.unfold(-1, window_size, hop_length) * win  # (B, C, frames, window)
    spectrum = torch.fft.rfft(frames, n=n_fft, dim=-1)[..., start:stop]
    if output == "power":
        values = spectrum.real.square() + spectrum.imag.square()
    elif output == "magnitude":
        values = spectrum.abs()
    else:
        raise InputError(f"compute_spectrogram: output must be 'magnitude' or 'power'; got {output!r}.")
    if log:
        values = torch.log(values + log_eps)
    values = values.transpose(-1, -2)
    return values.squeeze(0) if was_unbatched else values


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
