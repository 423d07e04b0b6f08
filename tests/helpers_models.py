"""Small models and data shared by tests/test_models.py and tests/test_hub.py."""

from __future__ import annotations

import torch

from neurocrane.models import SEEGTransformer, SEEGTransformerConfig, SpectralModel, SpectralModelConfig
from neurocrane.pipeline import Pipeline
from neurocrane.preprocessing import CommonAverageReference, Spectrogram, ZScore

RATE = 128.0
N_CHANNELS = 5
N_TIMES = 128


def time_pipeline() -> Pipeline:
    return Pipeline([CommonAverageReference(), ZScore()])


def spectral_pipeline() -> Pipeline:
    # 0.25 s windows at 128 Hz: 32-sample FFT, 4 Hz bins, 0..40 Hz kept -> 11 bins
    return Pipeline([CommonAverageReference(), Spectrogram(window_length=0.25, hop_length=0.125, freq_range=(0.0, 40.0), log=True)])


SPECTRAL_BINS = 11


def tiny_transformer(seed: int = 0, **overrides) -> SEEGTransformer:
    """A 1-layer, 16-wide SEEGTransformer on 16-sample patches (fast on CPU)."""
    torch.manual_seed(seed)
    params = dict(
        preprocessing=time_pipeline().to_dict(),
        sampling_rate=RATE,
        context_length=N_TIMES / RATE,
        patch_size=16,
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        intermediate_size=32,
        max_tokens=32,
    )
    params.update(overrides)
    return SEEGTransformer(SEEGTransformerConfig(**params)).eval()


def tiny_spectral(seed: int = 0, **overrides) -> SpectralModel:
    torch.manual_seed(seed)
    params = dict(preprocessing=spectral_pipeline().to_dict(), sampling_rate=RATE, n_freqs=SPECTRAL_BINS, hidden_size=8, num_labels=3)
    params.update(overrides)
    return SpectralModel(SpectralModelConfig(**params)).eval()


def signals(batch: int = 3, channels: int = N_CHANNELS, times: int = N_TIMES, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, times, generator=g)
