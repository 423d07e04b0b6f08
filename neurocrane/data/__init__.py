"""Data layer: recordings on disk, readers, synthetic corpus, windows, samplers and collate.

Readers for MNE/BIDS live in :mod:`neurocrane.data.readers` and import MNE only when called.
"""

from neurocrane.data.block_pool import LocalBlockPool
from neurocrane.data.collate import WindowCollator, collate_windows, to_neural_batch
from neurocrane.data.loader import WindowDataLoader
from neurocrane.data.preprocessing import BasicPreprocessor
from neurocrane.data.recording import (
    Event,
    Recording,
    RecordingError,
    RecordingIndex,
    RecordingNotFoundError,
    open_recording,
    write_recording,
)
from neurocrane.data.recording_cache import preprocess_recording, preprocess_recordings
from neurocrane.data.samplers import (
    BalancedClassBatchSampler,
    RandomBatchSampler,
    SamplerInjectionError,
    SessionBatchSampler,
    SubjectBatchSampler,
)
from neurocrane.data.synthetic import make_synthetic_corpus, make_synthetic_recording
from neurocrane.data.windows import WindowDataset

__all__ = [
    "Event",
    "Recording",
    "RecordingError",
    "RecordingIndex",
    "RecordingNotFoundError",
    "open_recording",
    "write_recording",
    "preprocess_recording",
    "preprocess_recordings",
    "make_synthetic_corpus",
    "make_synthetic_recording",
    "WindowDataset",
    "SessionBatchSampler",
    "SubjectBatchSampler",
    "BalancedClassBatchSampler",
    "RandomBatchSampler",
    "SamplerInjectionError",
    "collate_windows",
    "to_neural_batch",
    "WindowCollator",
    "WindowDataLoader",
    "LocalBlockPool",
    "BasicPreprocessor",
    "iEEGDataModule",
    "read_subject_trials",
]


def __getattr__(name: str):
    # the data module imports pytorch_lightning (seconds); load it only when asked for
    if name in ("iEEGDataModule", "read_subject_trials"):
        from neurocrane.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'neurocrane.data' has no attribute {name!r}")
