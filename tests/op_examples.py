"""Non-default parameters for every registered built-in op, used by the round-trip tests.

Every op registered by neurocrane must appear here, and across its examples every field must
take a non-default value at least once (tests/test_pipeline_io.py checks both), so the
round-trip guarantee covers all fields of all ops, not a sample.
"""

EXAMPLES: dict[str, list[dict]] = {
    "identity": [{}],
    "car": [{"method": "median", "exclude_masked": False}],
    "laplacian": [
        {"mode": "positions", "neighbor_distance": 4.0, "require_neighbors": "both", "non_laplacian": "drop"},
        {"mode": "adjacent"},
    ],
    "bipolar": [{"pairs": "shaft"}, {"pairs": [["LA1", "LA2"], ["LB3", "LB4"]]}],
    "select_electrodes": [{"max_electrodes": 64, "strategy": "variance"}],
    "random_electrodes": [{"max_electrodes": 32, "seed": 3}],
    "select_channels": [
        {"keep": ["LA1", "LA2"], "drop": ["LA2"], "drop_masked": True, "missing": "ignore"},
        {"keep": None, "drop": []},
    ],
    "spatial_filter": [
        {"weights": [[1.0, -1.0], [0.5, 0.5]], "input_channels": ["LA1", "LA2"], "output_channels": ["d", "m"]}
    ],
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
    "morlet": [
        {
            "frequencies": [4.0, 8.0, 16.0],
            "n_cycles": [3.0, 5.0, 7.0],
            "output": "magnitude",
            "zero_mean": False,
            "decim": 4,
            "log": True,
            "log_eps": 1e-6,
        },
        {"frequencies": [10.0], "n_cycles": 5.0},
    ],
    "hilbert_envelope": [{"band": [60.0, 120.0], "transition": 4.0}, {"band": None}],
    "band_power": [
        {
            "bands": [["theta", 4.0, 8.0], ["high_gamma", 70.0, 150.0]],
            "average": True,
            "transition": 2.0,
            "log": True,
            "log_eps": 1e-6,
        }
    ],
    "minmax": [{"axes": ["freq", "time"], "feature_range": [-1.0, 1.0], "eps": 1e-6, "clip": True}],
    "robust_scale": [
        {"axes": ["channel", "time"], "quantile_range": [10.0, 90.0], "unit_variance": True, "eps": 1e-6, "clip": 20.0}
    ],
    "trim": [{"frames": 10}, {"seconds": 0.25}],
    "nan_to_num": [{"nan": -1.0, "posinf": 1e6, "neginf": -1e6}],
    "permute_axes": [{"axes": ["batch", "channel", "time", "freq"]}],
    "bandpass": [{"low": 70.0, "high": 250.0, "order": 5, "phase": "causal"}],
    "highpass": [{"cutoff": 0.5, "order": 2, "phase": "causal"}],
    "lowpass": [{"cutoff": 200.0, "order": 6, "phase": "causal"}],
    "notch": [{"line_freq": 60.0, "n_harmonics": 5, "quality": 12.0, "phase": "causal"}, {"freqs": [60.0, 120.0]}],
    "resample": [{"new_rate": 500.0, "kaiser_beta": 8.0}],
}
