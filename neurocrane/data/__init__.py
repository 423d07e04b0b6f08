"""Data layer: recordings on disk, readers, synthetic corpus, windows, samplers and collate.

Readers for MNE/BIDS live in :mod:`neurocrane.data.readers` and import MNE only when called.
"""

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
from neurocrane.data.synthetic import make_synthetic_corpus, make_synthetic_recording

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
]
