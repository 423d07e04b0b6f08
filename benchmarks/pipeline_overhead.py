"""Pipeline overhead: running ops through a Pipeline vs calling the same functions directly.

Both paths run the same three ops (CAR → per-channel z-score → spectrogram) on the same
(32, 128, 4096) float32 CPU tensor at 2048 Hz, interleaved in one run, and the script prints
the ratio of median times (pipeline / direct). Target: ratio ≤ 1.05.

Run:  .venv/bin/python benchmarks/pipeline_overhead.py [--repeats 15] [--shape 32 128 4096]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neurocrane import NeuralBatch, Pipeline
from neurocrane.preprocessing import (
    CommonAverageReference,
    Spectrogram,
    ZScore,
    common_average_rereference,
    compute_spectrogram,
    zscore_normalize,
)

RATE = 2048.0


def direct(x: torch.Tensor) -> torch.Tensor:
    x = common_average_rereference(x)
    x = zscore_normalize(x, dim=-1)
    return compute_spectrogram(x, RATE, window_size=512, hop_length=128, freq_range=(0.0, 200.0))


PIPELINE = Pipeline(
    [
        CommonAverageReference(),
        ZScore(),
        Spectrogram(window_length=0.25, hop_length=0.0625, freq_range=(0.0, 200.0)),
    ]
)


def via_pipeline(x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    return PIPELINE(NeuralBatch(x, sampling_rate=RATE, channel_names=names)).signals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--shape", type=int, nargs=3, default=(32, 128, 4096))
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(*args.shape)
    names = tuple(f"E{i}" for i in range(args.shape[1]))
    assert torch.equal(direct(x), via_pipeline(x, names)), "the two paths must compute the same thing"
    for _ in range(2):  # warm-up (allocator, FFT plans, caches)
        direct(x)
        via_pipeline(x, names)
    t_direct, t_pipe = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        direct(x)
        t1 = time.perf_counter()
        via_pipeline(x, names)
        t2 = time.perf_counter()
        t_direct.append(t1 - t0)
        t_pipe.append(t2 - t1)
    d, p = statistics.median(t_direct), statistics.median(t_pipe)
    print(f"shape {tuple(args.shape)} float32 CPU, torch threads {torch.get_num_threads()}, {args.repeats} repeats")
    print("| path | median time (ms) |")
    print("|---|---|")
    print(f"| direct functions (peer) | {d * 1e3:.1f} |")
    print(f"| neurocrane Pipeline | {p * 1e3:.1f} |")
    print(f"ratio pipeline/direct = {p / d:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
