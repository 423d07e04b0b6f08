"""Non-default parameters for every registered built-in op, used by the round-trip tests.

Every op registered by neurocrane must appear here, and across its examples every field must
take a non-default value at least once (tests/test_pipeline_io.py checks both), so the
round-trip guarantee covers all fields of all ops, not a sample.
"""

EXAMPLES: dict[str, list[dict]] = {
    "identity": [{}],
    "car": [{"method": "median", "exclude_masked": False}],
    "zscore": [{"axes": ["channel", "time"], "eps": 1e-6, "clip": 5.0, "ddof": 1}],
    "spectrogram": [
        {
            "window_length": 0.5,
            "hop_length": 0.05,
            "fft_length": 1.0,
            "freq_range": [1.0, 150.0],
            "window": "hamming",
            "center": False,
            "pad_mode": "reflect",
            "pad_end": True,
            "scale_by_window": True,
            "output": "power",
            "log": True,
            "log_eps": 1e-6,
        }
    ],
}
