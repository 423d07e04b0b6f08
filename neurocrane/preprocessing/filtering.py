"""Filtering: band-pass, high-pass, low-pass and notch filters, and polyphase resampling.

Each operation is a pure tensor function and a registered :class:`Transform` node beside it.

Design and application:

* **Band/high/low-pass** — IIR Butterworth, designed with :func:`scipy.signal.butter` as
  second-order sections. **Notch** — one IIR notch per frequency, designed with
  :func:`scipy.signal.iirnotch` (quality factor ``Q``: -3 dB width = f0 / Q). **Resample** — FIR
  low-pass (Kaiser window, :func:`scipy.signal.firwin`) applied polyphase, the same design as
  :func:`scipy.signal.resample_poly`.
* IIR filters are applied with one real FFT round-trip per call, whatever the number of
  sections or notch frequencies:

  - ``phase="zero"`` (default) multiplies the spectrum of the padded signal by ``|H(f)|^2``,
    the response :func:`scipy.signal.filtfilt` converges to (forward-backward filtering: the
    order is effectively doubled and a Butterworth cutoff sits at -6 dB, not -3 dB). The signal
    is extended at both ends by an odd reflection (``2 x[0] - x[k]``, scipy's
    ``padtype="odd"``) as long as the filter's impulse response (until the remaining sum of
    ``|h|`` is below 1e-3 of the total), but at most 40 % of the signal length per side, so
    the circular wrap-around of the FFT lands where the impulse response has decayed. On whole
    recordings (the intended use, see ``min_duration``) the padding is the full impulse
    response and the output matches ``filtfilt`` away from the first/last impulse-response
    length. On windows shorter than the filter the edge samples are an estimate, about as far
    from the continuous-recording result as ``sosfiltfilt``'s own padding gives; the cap keeps
    the FFT at about 1.8 times the window (for 4096-sample windows, 7500 points: FFTs past ~8k
    points cost twice as much per sample on the CPUs we measured).
  - ``phase="causal"`` is one forward pass, as :func:`scipy.signal.sosfilt` / ``lfilter``
    with zero initial state: the signal is convolved with the filter's impulse response,
    truncated where the remaining sum of ``|h|`` is below 1e-8 of the total (or to the signal length,
    which is exact), with enough zero padding that nothing wraps around.

* Designed filters, impulse-response lengths and frequency responses are cached per (sampling
  rate, parameters, FFT length, device, dtype).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
import pydantic
import scipy.fft
import scipy.signal
import torch
import torch.nn.functional as F

from neurocrane.batch import TIME_AXES, NeuralBatch, SignalSpec
from neurocrane.errors import InputError, SpecError
from neurocrane.pipeline.transform import Transform
from neurocrane.preprocessing import _fft
from neurocrane.preprocessing._tensor import batched, require_axes, require_rate, unbatched

__all__ = [
    "bandpass_filter",
    "highpass_filter",
    "lowpass_filter",
    "notch_filter",
    "notch_frequencies",
    "resample",
    "Bandpass",
    "Highpass",
    "Lowpass",
    "Notch",
    "Resample",
]

Phase = Literal["zero", "causal"]

# Impulse-response lengths are measured by the L1 norm of the tail: beyond sample k, the filter
# can add at most max|x| * sum_{j >= k} |h[j]| to an output. (An energy criterion would call a
# high-pass short: its long, small tail holds little energy but carries the whole DC rejection.)
#: Tail fraction beyond the zero-phase padding: what wraps around the FFT is about 1e-3 of the
#: jump at the wrap point, and only reaches the edge samples.
_PAD_TOL = 1e-3
#: Tail fraction cut off by the causal kernel (which reaches every sample).
_CAUSAL_TOL = 1e-8
#: Zero-phase padding per side is at most this fraction of the signal length (see module doc).
_MAX_PAD_FRACTION = 0.4
#: Tail fraction used for :meth:`Transform.min_duration` (the settling time).
_SETTLE_TOL = 1e-2
#: Longest impulse response simulated (samples); longer filters are treated as this long.
_MAX_IMPULSE = 1 << 22
#: Largest up/down factor accepted by :func:`resample`.
_MAX_RESAMPLE_FACTOR = 1 << 14

# A filter design is a hashable key: ("butter", order, btype, cutoffs, rate) or
# ("notch", freqs, quality, rate). Everything cached is keyed on it.
_Key = tuple


# -- checks -----------------------------------------------------------------------------------
def _check_rate(rate: float, what: str, op: str) -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise InputError(f"{op}: {what} must be a positive finite number of Hz; got {rate!r}.")
    return float(rate)


def _check_cutoff(value: float, name: str, rate: float, op: str) -> float:
    value = _check_rate(value, name, op)
    nyquist = rate / 2
    if value >= nyquist:
        raise InputError(
            f"{op}: {name}={value:g} Hz must be below the Nyquist frequency ({nyquist:g} Hz at "
            f"{rate:g} Hz sampling rate); lower {name} or use data sampled faster."
        )
    return value


def _check_order(order: int, op: str) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 20:
        raise InputError(f"{op}: order must be an integer from 1 to 20; got {order!r}.")
    return order


def _check_phase(phase: str, op: str) -> None:
    if phase not in ("zero", "causal"):
        raise InputError(f"{op}: phase must be 'zero' (forward-backward) or 'causal' (forward only); got {phase!r}.")


# -- design (numpy, float64, cached) ------------------------------------------------------------
@lru_cache(maxsize=256)
def _sos(key: _Key) -> np.ndarray:
    """Second-order sections (n_sections, 6) of a design key."""
    kind = key[0]
    if kind == "butter":
        _, order, btype, cutoffs, rate = key
        wn = cutoffs[0] if len(cutoffs) == 1 else list(cutoffs)
        sos = scipy.signal.butter(order, wn, btype=btype, fs=rate, output="sos")
    elif kind == "notch":
        _, freqs, quality, rate = key
        rows = []
        for f in freqs:
            b, a = scipy.signal.iirnotch(f, quality, fs=rate)
            rows.append(np.concatenate([b, a]))
        sos = np.stack(rows)
    else:  # pragma: no cover - keys are built in this module only
        raise ValueError(f"unknown filter design {kind!r}")
    sos = np.asarray(sos, dtype=np.float64)
    sos.setflags(write=False)
    return sos


@lru_cache(maxsize=256)
def _impulse_response(key: _Key, length: int) -> np.ndarray:
    """The first ``length`` samples of the causal impulse response."""
    impulse = np.zeros(length)
    impulse[0] = 1.0
    h = scipy.signal.sosfilt(np.array(_sos(key)), impulse)
    h.setflags(write=False)
    return h


@lru_cache(maxsize=256)
def _decay_samples(key: _Key, tol: float) -> int:
    """Samples after which the impulse response's remaining L1 mass is below ``tol`` of its total."""
    n = 1024
    while True:
        h = _impulse_response(key, n)
        tail = np.cumsum(np.abs(h)[::-1])[::-1]  # tail[k] = sum of |h| from sample k on
        if tail[n // 2] <= tol * tail[0] or n >= _MAX_IMPULSE:
            return max(1, int(np.argmax(tail <= tol * tail[0])) or n)
        n *= 2


def _squared_magnitude(key: _Key, n_fft: int) -> np.ndarray:
    """|H|^2 at the rfft bins of an ``n_fft``-point FFT (what forward-backward filtering applies)."""
    z = np.exp(-1j * 2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft)
    powers = np.stack([np.ones_like(z), z, z * z])  # 1, z^-1, z^-2
    out = np.ones(z.shape)
    for b0, b1, b2, a0, a1, a2 in _sos(key):
        num = b0 * powers[0] + b1 * powers[1] + b2 * powers[2]
        den = a0 * powers[0] + a1 * powers[1] + a2 * powers[2]
        out *= (num.real**2 + num.imag**2) / (den.real**2 + den.imag**2)
    return out


@lru_cache(maxsize=32)
def _response(key: _Key, n_fft: int, phase: Phase, kernel_len: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """Frequency response to multiply an ``n_fft``-point rfft by, on ``device`` in ``dtype``.

    Zero phase: real ``|H|^2``. Causal: the rfft of the impulse response truncated to
    ``kernel_len`` samples (complex).
    """
    if phase == "zero":
        values = torch.from_numpy(_squared_magnitude(key, n_fft)).to(dtype)
    else:
        h = torch.from_numpy(np.array(_impulse_response(key, kernel_len)))
        values = torch.fft.rfft(h, n=n_fft).to(torch.complex128 if dtype == torch.float64 else torch.complex64)
    return values.to(device)


# -- application -------------------------------------------------------------------------------
def _odd_extend(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Extend the last axis by ``left``/``right`` samples (each at most ``n - 1``) with an odd
    reflection about the end samples: ``2 x[0] - x[k]`` before, ``2 x[-1] - x[-1 - k]`` after."""
    n = x.shape[-1]
    if not (left or right):
        return x
    ext = F.pad(x, (left, right), mode="reflect")
    # in place on the fresh pad output (reflection_pad's backward does not need it)
    if left:
        ext[..., :left].neg_().add_(2 * x[..., :1])
    if right:
        ext[..., left + n :].neg_().add_(2 * x[..., -1:])
    return ext


@lru_cache(maxsize=256)
def _zero_phase_fft_len(n: int, decay: int) -> int:
    """FFT length for zero-phase filtering of ``n`` samples: room for ``decay`` samples of odd
    reflection on each side, capped at ``_MAX_PAD_FRACTION * n`` and never more than the
    ``n - 1`` a reflection can supply."""
    n_fft = scipy.fft.next_fast_len(n + 2 * min(decay, int(_MAX_PAD_FRACTION * n), n - 1), real=True)
    limit = 3 * n - 2
    if n_fft > limit:  # round down to a fast length the reflection can fill
        n_fft = limit
        while not _is_smooth(n_fft):
            n_fft -= 1
    return n_fft


def _is_smooth(m: int) -> bool:
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    # torch.fft has no half-precision CPU kernels; compute those in float32 and cast back
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _apply_iir(x: torch.Tensor, key: _Key, phase: Phase) -> torch.Tensor:
    """Apply the IIR filter ``key`` along the last axis of a (batch, channels, time) tensor."""
    n = x.shape[-1]
    dtype = _work_dtype(x)
    xw = x.to(dtype)
    if phase == "zero":
        n_fft = _zero_phase_fft_len(n, _decay_samples(key, _PAD_TOL))
        left = (n_fft - n) // 2
        ext = _odd_extend(xw, left, n_fft - n - left)
        spectrum = _fft.rfft(ext, dim=-1)
        spectrum *= _response(key, n_fft, phase, 0, str(x.device), dtype)
        y = _fft.irfft(spectrum, n=n_fft, dim=-1)[..., left : left + n]
    else:
        # Only the first n samples of the impulse response reach the n outputs: truncating there
        # is exact, so long filters on short signals still match sosfilt.
        kernel_len = min(_decay_samples(key, _CAUSAL_TOL), n)
        n_fft = scipy.fft.next_fast_len(n + kernel_len - 1, real=True)
        response = _response(key, n_fft, phase, kernel_len, str(x.device), dtype)
        spectrum = _fft.rfft(xw, n=n_fft, dim=-1)
        spectrum *= response
        y = _fft.irfft(spectrum, n=n_fft, dim=-1)[..., :n]
    return y.to(x.dtype).contiguous()


def _run(x: torch.Tensor, key: _Key, phase: Phase, op: str) -> torch.Tensor:
    x3, was_unbatched = batched(x, op)
    _check_phase(phase, op)
    if x3.shape[-1] == 0:
        raise InputError(f"{op}: the signal has no samples (time axis of size 0).")
    return unbatched(_apply_iir(x3, key, phase), was_unbatched)


def _settle_seconds(key: _Key, phase: Phase, rate: float) -> float:
    n = _decay_samples(key, _SETTLE_TOL)
    return (2 * n if phase == "zero" else n) / rate


# -- public functions --------------------------------------------------------------------------
def bandpass_filter(
    x: torch.Tensor,
    sampling_rate: float,
    low: float,
    high: float,
    *,
    order: int = 4,
    phase: Phase = "zero",
) -> torch.Tensor:
    """Butterworth band-pass filter along time (IIR, ``scipy.signal.butter`` design).

    Args:
        x: Signals of shape (batch, channels, time) or (channels, time).
        sampling_rate: Sampling rate in Hz.
        low: Lower cutoff in Hz (0 < low < high).
        high: Upper cutoff in Hz (below Nyquist).
        order: Butterworth order of the design (2 * order poles for a band-pass).
        phase: ``"zero"``: forward-backward, like ``scipy.signal.sosfiltfilt`` (no delay,
            effective order doubled, -6 dB at the cutoffs). ``"causal"``: one forward pass,
            like ``scipy.signal.sosfilt`` (-3 dB at the cutoffs, delayed).

    Returns:
        Filtered signals of the input's shape, dtype and device.

    Example:
        >>> x = torch.randn(4, 16, 4096)
        >>> y = bandpass_filter(x, 2048.0, low=1.0, high=200.0)
        >>> y.shape
        torch.Size([4, 16, 4096])
    """
    op = "bandpass_filter"
    batched(x, op)  # rank and dtype errors first
    rate = _check_rate(sampling_rate, "sampling_rate", op)
    low = _check_cutoff(low, "low", rate, op)
    high = _check_cutoff(high, "high", rate, op)
    if low >= high:
        raise InputError(f"{op}: low ({low:g} Hz) must be below high ({high:g} Hz).")
    key = ("butter", _check_order(order, op), "bandpass", (low, high), rate)
    return _run(x, key, phase, op)


def _one_cutoff_filter(
    x: torch.Tensor, sampling_rate: float, cutoff: float, order: int, phase: Phase, btype: str
) -> torch.Tensor:
    op = f"{btype}_filter"
    batched(x, op)  # rank and dtype errors first
    rate = _check_rate(sampling_rate, "sampling_rate", op)
    cutoff = _check_cutoff(cutoff, "cutoff", rate, op)
    key = ("butter", _check_order(order, op), btype, (cutoff,), rate)
    return _run(x, key, phase, op)


def highpass_filter(
    x: torch.Tensor, sampling_rate: float, cutoff: float, *, order: int = 4, phase: Phase = "zero"
) -> torch.Tensor:
    """Butterworth high-pass filter along time (IIR, ``scipy.signal.butter`` design).

    Args:
        x: Signals of shape (batch, channels, time) or (channels, time).
        sampling_rate: Sampling rate in Hz.
        cutoff: Cutoff in Hz (0 < cutoff < Nyquist).
        order: Butterworth order of the design.
        phase: ``"zero"`` (forward-backward, like ``sosfiltfilt``) or ``"causal"`` (forward
            only, like ``sosfilt``); see :func:`bandpass_filter`.

    Returns:
        Filtered signals of the input's shape, dtype and device.

    Example:
        >>> y = highpass_filter(torch.randn(16, 8192), 2048.0, cutoff=0.5)
    """
    return _one_cutoff_filter(x, sampling_rate, cutoff, order, phase, "highpass")


def lowpass_filter(
    x: torch.Tensor, sampling_rate: float, cutoff: float, *, order: int = 4, phase: Phase = "zero"
) -> torch.Tensor:
    """Butterworth low-pass filter along time (IIR, ``scipy.signal.butter`` design).

    Args:
        x: Signals of shape (batch, channels, time) or (channels, time).
        sampling_rate: Sampling rate in Hz.
        cutoff: Cutoff in Hz (0 < cutoff < Nyquist).
        order: Butterworth order of the design.
        phase: ``"zero"`` (forward-backward, like ``sosfiltfilt``) or ``"causal"`` (forward
            only, like ``sosfilt``); see :func:`bandpass_filter`.

    Returns:
        Filtered signals of the input's shape, dtype and device.

    Example:
        >>> y = lowpass_filter(torch.randn(2, 16, 4096), 2048.0, cutoff=250.0)
    """
    return _one_cutoff_filter(x, sampling_rate, cutoff, order, phase, "lowpass")


def notch_frequencies(
    sampling_rate: float,
    line_freq: float | None = None,
    *,
    freqs: tuple[float, ...] | list[float] | None = None,
    n_harmonics: int | None = None,
) -> tuple[float, ...]:
    """The notch frequencies for a line frequency (and harmonics) or an explicit list.

    Args:
        sampling_rate: Sampling rate in Hz.
        line_freq: Power-line frequency (50 or 60 Hz); its harmonics ``k * line_freq`` for
            ``k = 1..n_harmonics`` are kept, harmonics at or above Nyquist are skipped.
        freqs: Explicit frequencies instead (each must be below Nyquist).
        n_harmonics: Number of harmonics including the fundamental (default: all below Nyquist).

    Returns:
        The frequencies in Hz, in increasing order.

    Raises:
        InputError: no frequency given, both forms given, or nothing below Nyquist.

    Example:
        >>> notch_frequencies(2048.0, 60.0, n_harmonics=6)
        (60.0, 120.0, 180.0, 240.0, 300.0, 360.0)
    """
    op = "notch_filter"
    rate = _check_rate(sampling_rate, "sampling_rate", op)
    nyquist = rate / 2
    if (line_freq is None) == (freqs is None):
        raise InputError(
            f"{op}: give either line_freq (50 or 60 Hz, harmonics added) or an explicit list of freqs; "
            f"got line_freq={line_freq!r}, freqs={freqs!r}."
        )
    if freqs is not None:
        if n_harmonics is not None:
            raise InputError(f"{op}: n_harmonics applies to line_freq, not to an explicit freqs list.")
        out = tuple(sorted(_check_cutoff(f, "freqs", rate, op) for f in freqs))
        if not out:
            raise InputError(f"{op}: freqs is empty; give at least one frequency in Hz.")
        return out
    line = _check_rate(line_freq, "line_freq", op)
    if n_harmonics is not None and (isinstance(n_harmonics, bool) or not isinstance(n_harmonics, int) or n_harmonics < 1):
        raise InputError(f"{op}: n_harmonics must be a positive integer or None (all below Nyquist); got {n_harmonics!r}.")
    count = math.ceil(nyquist / line) - 1 if n_harmonics is None else n_harmonics
    out = tuple(k * line for k in range(1, count + 1) if k * line < nyquist)
    if not out:
        raise InputError(
            f"{op}: line_freq={line:g} Hz is not below the Nyquist frequency ({nyquist:g} Hz at {rate:g} Hz "
            "sampling rate); there is nothing to notch. Check line_freq and the sampling rate."
        )
    return out


def notch_filter(
    x: torch.Tensor,
    sampling_rate: float,
    line_freq: float | None = None,
    *,
    freqs: tuple[float, ...] | list[float] | None = None,
    n_harmonics: int | None = None,
    quality: float = 30.0,
    phase: Phase = "zero",
) -> torch.Tensor:
    """Remove line noise with IIR notches (``scipy.signal.iirnotch`` design) at a line frequency
    and its harmonics, or at explicit frequencies, in one FFT round-trip.

    Args:
        x: Signals of shape (batch, channels, time) or (channels, time).
        sampling_rate: Sampling rate in Hz.
        line_freq: Line frequency (50 or 60 Hz); harmonics below Nyquist are notched too.
        freqs: Explicit notch frequencies in Hz instead of ``line_freq``.
        n_harmonics: With ``line_freq``: how many harmonics, the fundamental included (default
            all below Nyquist); harmonics at or above Nyquist are skipped.
        quality: Quality factor Q of each notch (-3 dB width = frequency / Q).
        phase: ``"zero"`` (default): each notch applied forward-backward, as
            ``scipy.signal.filtfilt`` (Neuroprobe). ``"causal"``: one forward ``lfilter`` pass
            per notch (BrainBERT).

    Returns:
        Filtered signals of the input's shape, dtype and device.

    Example:
        >>> x = torch.randn(2, 8, 4096)
        >>> y = notch_filter(x, 2048.0, line_freq=60.0, n_harmonics=5, quality=12.0)  # Neuroprobe
        >>> y = notch_filter(x, 2048.0, freqs=[60, 120, 180, 240, 300, 360], phase="causal")  # BrainBERT
    """
    op = "notch_filter"
    batched(x, op)
    found = notch_frequencies(sampling_rate, line_freq, freqs=freqs, n_harmonics=n_harmonics)
    quality = _check_rate(quality, "quality", op)
    key = ("notch", found, quality, float(sampling_rate))
    return _run(x, key, phase, op)


# -- resampling --------------------------------------------------------------------------------
def _resample_factors(orig_rate: float, new_rate: float, op: str) -> tuple[int, int]:
    """``(up, down)`` in lowest terms with ``new_rate / orig_rate = up / down``."""
    orig = _check_rate(orig_rate, "orig_rate", op)
    new = _check_rate(new_rate, "new_rate", op)
    exact = Fraction(new) / Fraction(orig)
    ratio = exact.limit_denominator(_MAX_RESAMPLE_FACTOR)
    up, down = ratio.numerator, ratio.denominator
    if up > _MAX_RESAMPLE_FACTOR or abs(float(ratio - exact)) > 1e-9 * float(exact):
        raise InputError(
            f"{op}: {new:g} Hz / {orig:g} Hz is not a ratio up/down of integers up to {_MAX_RESAMPLE_FACTOR} "
            f"(closest: {up}/{down}); choose a target rate whose ratio to the input rate is a simple fraction."
        )
    return up, down


@lru_cache(maxsize=32)
def _resample_kernels(up: int, down: int, beta: float) -> tuple[int, int, tuple[tuple[int, int, np.ndarray], ...]]:
    """Polyphase kernels equal to ``scipy.signal.resample_poly``'s filter.

    Output ``m`` is ``sum_q x[q] * h[m * down + half_len - q * up]`` with ``h`` the
    ``firwin(2 * half_len + 1, 1 / max(up, down), window=("kaiser", beta)) * up`` filter. Outputs
    ``m = r + up * j`` (one residue ``r``) share a sub-filter and read windows ``down`` samples
    apart, so each residue is a strided correlation; residues whose windows start close together
    are stacked into one ``conv1d`` call (kernels shifted by their start offsets).

    Returns:
        ``(taps, start_of_residue_0, groups)``: the sub-filter length, and per group its first
        window start (in input samples) and its weights of shape (residues, 1, length).
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = scipy.signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", beta)) * up
    taps = -(-h.size // up)
    h = np.concatenate([h, np.zeros(taps * up - h.size)])
    starts, kernels = [], []
    for r in range(up):
        pos = r * down + half_len
        phase, last = pos % up, pos // up
        kernels.append(h[phase::up][:taps][::-1])  # window x[last - taps + 1 .. last]
        starts.append(last - taps + 1)
    groups = []
    r = 0
    while r < up:
        end = r
        while end + 1 < up and starts[end + 1] - starts[r] <= taps:
            end += 1
        first = starts[r]
        width = taps + starts[end] - first
        w = np.zeros((end - r + 1, 1, width))
        for i in range(r, end + 1):
            offset = starts[i] - first
            w[i - r, 0, offset : offset + taps] = kernels[i]
        w.setflags(write=False)
        groups.append((first, width, w))
        r = end + 1
    return taps, starts[0], tuple(groups)


def resample(x: torch.Tensor, orig_rate: float, new_rate: float, *, kaiser_beta: float = 5.0) -> torch.Tensor:
    """Resample along time with an anti-aliasing FIR filter, polyphase (``scipy.signal.resample_poly``).

    ``new_rate / orig_rate`` is reduced to ``up / down``; the low-pass FIR (cutoff at the lower
    Nyquist frequency, ``20 * max(up, down) + 1`` taps, Kaiser window) and the zero padding
    outside the signal are those of ``resample_poly`` with its defaults, so results match it to
    float rounding. Output length: ``ceil(n * up / down)``.

    Args:
        x: Signals of shape (batch, channels, time) or (channels, time).
        orig_rate: Sampling rate of ``x`` in Hz.
        new_rate: Target sampling rate in Hz.
        kaiser_beta: Kaiser window parameter of the FIR design (resample_poly's default 5.0).

    Returns:
        Resampled signals, same rank, dtype and device.

    Raises:
        InputError: rates not positive, or a ratio that is not a fraction with factors up to
            16384.

    Example:
        >>> y = resample(torch.randn(2, 8, 4096), 2048.0, 500.0)
        >>> y.shape
        torch.Size([2, 8, 1000])
    """
    op = "resample"
    x3, was_unbatched = batched(x, op)
    up, down = _resample_factors(orig_rate, new_rate, op)
    beta = _check_rate(kaiser_beta, "kaiser_beta", op)
    if up == down == 1:
        return x.clone()
    n = x3.shape[-1]
    if n == 0:
        raise InputError(f"{op}: the signal has no samples (time axis of size 0).")
    n_out = -(-n * up // down)
    per_residue = -(-n_out // up)
    taps, _, groups = _resample_kernels(up, down, beta)
    dtype = _work_dtype(x3)
    batch, channels = x3.shape[:2]
    flat = x3.reshape(batch * channels, 1, n).to(dtype)
    left = max(0, -min(first for first, _, _ in groups))
    right = max(0, max(first + down * (per_residue - 1) + width for first, width, _ in groups) - n)
    padded = F.pad(flat, (left, right))
    outs = []
    for first, _, w in groups:
        weight = torch.from_numpy(np.array(w)).to(device=x.device, dtype=dtype)
        out = F.conv1d(padded[..., left + first :], weight, stride=down)
        outs.append(out[..., :per_residue])
    y = torch.cat(outs, dim=1).transpose(1, 2).reshape(batch * channels, per_residue * up)[:, :n_out]
    return unbatched(y.reshape(batch, channels, n_out).to(x.dtype), was_unbatched)


# -- Transform nodes ---------------------------------------------------------------------------
class _FilterNode(Transform):
    """Shared behaviour of the IIR filter nodes (not registered: it has no ``op``)."""

    wants_continuous: ClassVar[bool] = True
    phase: Phase = "zero"

    def _cutoffs(self) -> dict[str, float]:
        raise NotImplementedError

    def _key(self, rate: float) -> _Key:
        raise NotImplementedError

    def _problems(self, rate: float) -> list[str]:
        nyquist = rate / 2
        return [
            f"{self.op}: {name}={value:g} Hz must be below the Nyquist frequency ({nyquist:g} Hz at "
            f"{rate:g} Hz sampling rate); lower '{name}' or resample the data less."
            for name, value in self._cutoffs().items()
            if value >= nyquist
        ]

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        require_axes(spec, self.op, TIME_AXES)
        rate = require_rate(spec, self.op)
        if rate is not None:
            problems = self._problems(rate)
            if problems:
                raise SpecError(problems)
        return spec

    def min_duration(self, spec: SignalSpec) -> float | None:
        rate = spec.sampling_rate
        if rate is None or self._problems(rate):
            return None
        return _settle_seconds(self._key(rate), self.phase, rate)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        self.output_spec(batch.spec)
        rate = batch.sampling_rate
        signals = _run(batch.signals, self._key(rate), self.phase, self.op)
        return batch.replace(signals=signals)


class Bandpass(_FilterNode):
    """Butterworth band-pass filter (IIR; see :func:`bandpass_filter`).

    Args:
        low: Lower cutoff in Hz.
        high: Upper cutoff in Hz (must be below Nyquist of the data).
        order: Butterworth order.
        phase: ``"zero"`` (forward-backward, default) or ``"causal"`` (forward only).

    Example:
        >>> Bandpass(low=70.0, high=250.0, order=5, phase="causal")  # BrainBERT high-gamma
    """

    op: ClassVar[str] = "bandpass"
    low: float = pydantic.Field(gt=0)
    high: float = pydantic.Field(gt=0)
    order: int = pydantic.Field(default=4, ge=1, le=20)

    @pydantic.model_validator(mode="after")
    def _low_below_high(self) -> Bandpass:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g} Hz) must be below high ({self.high:g} Hz)")
        return self

    def _cutoffs(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}

    def _key(self, rate: float) -> _Key:
        return ("butter", self.order, "bandpass", (self.low, self.high), float(rate))


class _OneCutoffNode(_FilterNode):
    """Shared fields of the high-pass and low-pass nodes (not registered: it has no ``op``)."""

    btype: ClassVar[str]
    cutoff: float = pydantic.Field(gt=0)
    order: int = pydantic.Field(default=4, ge=1, le=20)

    def _cutoffs(self) -> dict[str, float]:
        return {"cutoff": self.cutoff}

    def _key(self, rate: float) -> _Key:
        return ("butter", self.order, self.btype, (self.cutoff,), float(rate))


class Highpass(_OneCutoffNode):
    """Butterworth high-pass filter (IIR; see :func:`highpass_filter`).

    Args:
        cutoff: Cutoff in Hz.
        order: Butterworth order.
        phase: ``"zero"`` (forward-backward, default) or ``"causal"`` (forward only).

    Example:
        >>> Highpass(cutoff=0.5)
    """

    op: ClassVar[str] = "highpass"
    btype: ClassVar[str] = "highpass"


class Lowpass(_OneCutoffNode):
    """Butterworth low-pass filter (IIR; see :func:`lowpass_filter`).

    Args:
        cutoff: Cutoff in Hz (must be below Nyquist of the data).
        order: Butterworth order.
        phase: ``"zero"`` (forward-backward, default) or ``"causal"`` (forward only).

    Example:
        >>> Lowpass(cutoff=250.0)
    """

    op: ClassVar[str] = "lowpass"
    btype: ClassVar[str] = "lowpass"


class Notch(_FilterNode):
    """Line-noise notches (IIR, ``scipy.signal.iirnotch``; see :func:`notch_filter`).

    Give ``line_freq`` (its harmonics below Nyquist are notched too, ``n_harmonics`` of them at
    most) or an explicit ``freqs`` list (each must be below Nyquist).

    Args:
        line_freq: Power-line frequency in Hz (50 or 60).
        freqs: Explicit notch frequencies in Hz, instead of ``line_freq``.
        n_harmonics: With ``line_freq``: number of harmonics, fundamental included (default: all
            below Nyquist).
        quality: Quality factor Q of each notch.
        phase: ``"zero"`` (forward-backward, default) or ``"causal"`` (forward only).

    Example:
        >>> Notch(line_freq=60.0, n_harmonics=6, quality=30.0, phase="causal")  # BrainBERT
        >>> Notch(line_freq=60.0, n_harmonics=5, quality=12.0)  # Neuroprobe
    """

    op: ClassVar[str] = "notch"
    line_freq: float | None = pydantic.Field(default=None, gt=0)
    freqs: tuple[pydantic.PositiveFloat, ...] | None = None
    n_harmonics: int | None = pydantic.Field(default=None, ge=1)
    quality: float = pydantic.Field(default=30.0, gt=0)

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> Notch:
        if (self.line_freq is None) == (self.freqs is None):
            raise ValueError("give either line_freq (50 or 60 Hz, harmonics added) or an explicit freqs list")
        if self.freqs is not None:
            if not self.freqs:
                raise ValueError("freqs is empty; give at least one frequency in Hz")
            if self.n_harmonics is not None:
                raise ValueError("n_harmonics applies to line_freq, not to an explicit freqs list")
        return self

    def _cutoffs(self) -> dict[str, float]:
        if self.freqs is not None:
            return {f"freqs[{i}]": f for i, f in enumerate(self.freqs)}
        return {"line_freq": self.line_freq}

    def _key(self, rate: float) -> _Key:
        found = notch_frequencies(rate, self.line_freq, freqs=self.freqs, n_harmonics=self.n_harmonics)
        return ("notch", found, self.quality, float(rate))


class Resample(Transform):
    """Polyphase resampling to ``new_rate`` (FIR, as ``scipy.signal.resample_poly``; see :func:`resample`).

    Updates the batch's ``sampling_rate``; the time axis becomes ``ceil(n * up / down)`` long.

    Args:
        new_rate: Target sampling rate in Hz.
        kaiser_beta: Kaiser window parameter of the anti-aliasing FIR.

    Example:
        >>> Resample(new_rate=500.0)  # Neuroprobe's downsampling option
    """

    op: ClassVar[str] = "resample"
    wants_continuous: ClassVar[bool] = True
    new_rate: float = pydantic.Field(gt=0)
    kaiser_beta: float = pydantic.Field(default=5.0, gt=0)

    def _factors(self, rate: float) -> tuple[int, int]:
        try:
            return _resample_factors(rate, self.new_rate, self.op)
        except InputError as err:
            raise SpecError(str(err)) from None

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        require_axes(spec, self.op, TIME_AXES)
        rate = require_rate(spec, self.op)
        if rate is None:
            return spec.replace(sampling_rate=self.new_rate, shape=(*spec.shape[:2], None))
        up, down = self._factors(rate)
        n = spec.n_times
        n_out = None if n is None else -(-n * up // down)
        return spec.replace(sampling_rate=self.new_rate, shape=(*spec.shape[:2], n_out))

    def min_duration(self, spec: SignalSpec) -> float | None:
        rate = spec.sampling_rate
        if rate is None:
            return None
        try:
            up, down = _resample_factors(rate, self.new_rate, self.op)
        except InputError:
            return None
        if up == down == 1:
            return None
        return (20 * max(up, down) + 1) / (rate * up)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        self.output_spec(batch.spec)
        signals = resample(batch.signals, batch.sampling_rate, self.new_rate, kaiser_beta=self.kaiser_beta)
        return batch.replace(signals=signals, sampling_rate=self.new_rate)
