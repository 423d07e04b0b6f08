"""Speed of neurocrane's preprocessing ops against the implementations researchers already use.

Everything runs in one process on the same (64, 128, 4096) float32 CPU tensor at 2048 Hz
(override with --shape), each measurement the median of --repeats runs, and the script prints
ratios peer-time / neurocrane-time (higher = neurocrane faster) with the targets of issue 3:

* filter chain CAR → notch (60 Hz and harmonics below Nyquist, Q=30) → band-pass 1–200 Hz →
  z-score: vs MNE (IIR: ``mne.filter.notch_filter(method="iir")`` once per harmonic, as MNE's
  IIR notch takes one stop band per call, + ``mne.filter.filter_data`` with a 4th-order
  Butterworth band-pass like ours, all zero-phase) — target ≥ 10× — and vs SciPy
  (``iirnotch`` + ``filtfilt`` per harmonic, ``butter`` SOS + ``sosfiltfilt``) — target ≥ 3×;
  MNE's default FIR design is timed too, for reference;
* spectrogram vs ``scipy.signal.stft`` (same window and hop, magnitude) — target ≥ 2×;
* Laplacian from positions vs a per-electrode Python loop;
* CAR vs a plain copy of the same tensor (``clone``) — target: CAR within 2× of the copy.

Run:  .venv/bin/python benchmarks/ops.py [--repeats 3] [--shape 64 128 4096] [--skip-mne]
      [--only filter spectrogram laplacian car]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import scipy.signal
import torch

from neurocrane.preprocessing import (
    bandpass_filter,
    common_average_rereference,
    compute_spectrogram,
    laplacian_rereference,
    notch_filter,
    zscore_normalize,
)

RATE = 2048.0
OPS = ["filter", "spectrogram", "laplacian", "car"]
LINE = 60.0
HARMONICS = tuple(LINE * k for k in range(1, int((RATE / 2) // LINE) + 1) if LINE * k < RATE / 2)


def timeit(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: filter design caches, FFT plans, allocator
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def elapsed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- the filter chain, three ways --------------------------------------------------------------
def chain_neurocrane(x: torch.Tensor) -> torch.Tensor:
    x = common_average_rereference(x)
    x = notch_filter(x, RATE, line_freq=LINE, quality=30.0)
    x = bandpass_filter(x, RATE, 1.0, 200.0, order=4)
    return zscore_normalize(x, dim=-1)


def chain_scipy(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    for f0 in HARMONICS:
        b, a = scipy.signal.iirnotch(f0, 30.0, fs=RATE)
        x = scipy.signal.filtfilt(b, a, x, axis=-1)
    sos = scipy.signal.butter(4, (1.0, 200.0), btype="bandpass", fs=RATE, output="sos")
    x = scipy.signal.sosfiltfilt(sos, x, axis=-1)
    return (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)


def chain_mne(x: np.ndarray, method: str) -> np.ndarray:
    import mne

    x = (x - x.mean(axis=1, keepdims=True)).astype(np.float64).reshape(-1, x.shape[-1])
    if method == "iir":
        notch = x
        for f0 in HARMONICS:  # MNE's IIR notch takes one stop band per call
            notch = mne.filter.notch_filter(notch, RATE, f0, method="iir", verbose=False)
        band = mne.filter.filter_data(notch, RATE, 1.0, 200.0, method="iir", verbose=False,
                                      iir_params={"ftype": "butter", "order": 4, "output": "sos"})
    else:
        notch = mne.filter.notch_filter(x, RATE, HARMONICS, verbose=False)
        band = mne.filter.filter_data(notch, RATE, 1.0, 200.0, verbose=False)
    return (band - band.mean(-1, keepdims=True)) / band.std(-1, keepdims=True)


# -- Laplacian: per-electrode loop peer ---------------------------------------------------------
def laplacian_loop(x: torch.Tensor, positions: torch.Tensor, distance: float) -> torch.Tensor:
    out = torch.empty_like(x)
    d = torch.cdist(positions, positions)
    for i in range(x.shape[1]):
        nb = [j for j in range(x.shape[1]) if j != i and d[i, j] <= distance]
        out[:, i] = x[:, i] - x[:, nb].mean(dim=1) if nb else x[:, i]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 128, 4096))
    parser.add_argument("--skip-mne", action="store_true", help="skip the (slow) MNE peers")
    parser.add_argument("--only", nargs="+", choices=OPS, default=OPS, help="run only these comparisons")
    args = parser.parse_args()
    torch.manual_seed(0)
    b, c, t = args.shape
    x = torch.randn(b, c, t)
    xn = x.numpy()
    r = args.repeats
    rows: list[tuple[str, str, float, float, str]] = []

    if "filter" in args.only:
        ours = timeit(lambda: chain_neurocrane(x), r)
        rows.append(("filter chain", "SciPy iirnotch+filtfilt, butter+sosfiltfilt", ours, timeit(lambda: chain_scipy(xn), r), ">= 3x"))
        if not args.skip_mne:
            rows.append(("filter chain", "MNE, IIR (per-harmonic notch, Butterworth band-pass)", ours, timeit(lambda: chain_mne(xn, "iir"), 1), ">= 10x"))
            rows.append(("filter chain", "MNE, default FIR", ours, timeit(lambda: chain_mne(xn, "fir"), 1), "(reference)"))

    if "spectrogram" in args.only:
        rows.extend(spectrogram_rows(x, r))
    if "laplacian" in args.only:
        rows.append(laplacian_row(x, r))
    if "car" in args.only:
        car = timeit(lambda: common_average_rereference(x), r)
        copy = timeit(lambda: x.clone(), r)
        rows.append(("CAR", "plain copy (x.clone())", car, copy, "ratio >= 0.5"))

    print(f"shape {tuple(args.shape)} float32 CPU at {RATE:g} Hz, torch threads {torch.get_num_threads()}, "
          f"median of {r} runs")
    print("| op | peer | neurocrane (ms) | peer (ms) | peer / neurocrane | target |")
    print("|---|---|---|---|---|---|")
    for op, peer, t_ours, t_peer, target in rows:
        print(f"| {op} | {peer} | {t_ours * 1e3:.0f} | {t_peer * 1e3:.0f} | {t_peer / t_ours:.2f}x | {target} |")


def spectrogram_rows(x: torch.Tensor, r: int) -> list[tuple[str, str, float, float, str]]:
    """Spectrogram (Hann 512 / hop 128, magnitude) against scipy.signal.stft, measured interleaved."""
    xn = x.numpy()

    def ours() -> object:
        return compute_spectrogram(x, RATE, window_size=512, hop_length=128, center=True)

    def scipy_stft() -> object:
        return np.abs(scipy.signal.stft(xn, fs=RATE, nperseg=512, noverlap=384, boundary="zeros", padded=False)[2])

    # alternate the two so that load from other processes hits both alike
    ours(), scipy_stft()
    t_ours, t_peer = [], []
    for _ in range(r):
        t_ours.append(elapsed(ours))
        t_peer.append(elapsed(scipy_stft))
    return [("spectrogram", "scipy.signal.stft", statistics.median(t_ours), statistics.median(t_peer), ">= 2x")]


def laplacian_row(x: torch.Tensor, r: int) -> tuple[str, str, float, float, str]:
    """Laplacian from positions (16-contact shafts, 3.5 mm apart) against a per-electrode loop."""
    c = x.shape[1]
    positions = torch.zeros(c, 3)
    positions[:, 0] = torch.arange(c) % 16 * 3.5  # 16-contact shafts, 3.5 mm apart
    positions[:, 1] = torch.arange(c) // 16 * 20.0
    lap_ours = timeit(lambda: laplacian_rereference(x, neighbor_distance=4.0, electrode_positions=positions), r)
    lap_loop = timeit(lambda: laplacian_loop(x, positions, 4.0), r)
    return ("laplacian (positions)", "per-electrode loop", lap_ours, lap_loop, "(faster)")


if __name__ == "__main__":
    main()
