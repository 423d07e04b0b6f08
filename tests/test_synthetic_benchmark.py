"""SyntheticEventBenchmark has a known answer: the high-gamma pipeline + linear probe (and the
reference model on that pipeline) beat chance clearly; shuffled labels and a broken pipeline
stay at chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocrane.evaluation import PipelineBaseline, SyntheticEventBenchmark, event_windows, high_gamma_pipeline
from neurocrane.evaluation.protocols import LinearProbe
from neurocrane.pipeline import Pipeline
from neurocrane.preprocessing import BandPower

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# 5-fold unshuffled within-session CV: every window is tested once, so the pooled AUROC rests on
# ~110 windows (its chance-level sd is about 0.06) while the corpus stays small.
KW = dict(n_subjects=2, duration_s=120.0, k=5, probe=LinearProbe(grid=(0.01, 0.1, 1.0)))
SOUND_MIN_AUC = 0.8
CHANCE_BAND = 0.2  # |AUROC - 0.5| below this counts as chance


@pytest.fixture(scope="module")
def bench():
    return SyntheticEventBenchmark(**KW)


@pytest.fixture(scope="module")
def shuffled():
    return SyntheticEventBenchmark(shuffle_labels=True, **KW)


def test_windows_are_balanced_and_centred_on_events(bench):
    labels = bench.dataset.table.label
    counts = np.bincount(labels)
    assert counts.size == 2 and abs(counts[0] - counts[1]) <= 2 * len(bench.dataset.recordings)
    rec = bench.dataset.recordings[0]
    starts, names = event_windows(rec, 1.0)
    onsets = [e.onset for e in rec.events]
    for s in starts[names == "event"]:
        assert min(abs(s + 0.5 - (o + 0.5)) for o in onsets) < 1e-9  # 1 s event, 1 s window: same span
    for s in starts[names == "rest"]:
        assert all(s + 1.0 <= e.onset - 0.5 or s >= e.end + 0.5 for e in rec.events)


def test_sound_pipeline_with_linear_probe_beats_chance(bench):
    scores = bench.evaluate(PipelineBaseline(high_gamma_pipeline(), name="hg"), protocol="linear_probe")
    assert scores["auc"] >= SOUND_MIN_AUC
    assert scores["balanced_accuracy"] >= 0.65


def test_shuffled_labels_control_is_at_chance(shuffled):
    scores = shuffled.evaluate(PipelineBaseline(high_gamma_pipeline(), name="hg"), protocol="linear_probe")
    assert abs(scores["auc"] - 0.5) < CHANCE_BAND


def test_broken_pipeline_falls_to_chance(bench):
    low_only = Pipeline([BandPower(bands=(("low", 1.0, 20.0),), average=True, log=True)])
    scores = bench.evaluate(PipelineBaseline(low_only, name="low"), protocol="linear_probe")
    assert abs(scores["auc"] - 0.5) < CHANCE_BAND


def test_reference_model_on_high_gamma_pipeline_beats_chance(bench, shuffled):
    """The reference SpectralModel whose stored pipeline is notch + high-gamma spectrogram:
    frozen per-channel features (layer_0) + linear probe find the events; shuffled labels do not."""
    from neurocrane.batch import SignalSpec
    from neurocrane.models import SpectralModel, SpectralModelConfig
    from neurocrane.preprocessing import Notch, Spectrogram

    pipe = Pipeline([Notch(line_freq=60.0), Spectrogram(freq_range=(70.0, 150.0), log=True)])
    n_freqs = pipe.output_spec(SignalSpec(shape=(None, 8, 512), sampling_rate=512.0)).shape[2]
    torch.manual_seed(0)
    model = SpectralModel(SpectralModelConfig(n_freqs=n_freqs, hidden_size=4, num_labels=2, preprocessing=pipe.to_dict()))
    # positive weights: each hidden unit is a weighted sum of high-gamma log power (as a pretrained
    # projection could be); random signs can cancel a broadband power increase by chance
    with torch.no_grad():
        model.proj.weight.abs_()
    for b in (bench, shuffled):
        b.feature_key = "layer_0"
    try:
        sound = bench.evaluate(model, protocol="linear_probe")["auc"]
        control = shuffled.evaluate(model, protocol="linear_probe")["auc"]
    finally:
        for b in (bench, shuffled):
            b.feature_key = "final"
    assert sound >= SOUND_MIN_AUC
    assert abs(control - 0.5) < CHANCE_BAND


def test_multiclass_task_scores_one_vs_rest(tmp_path):
    bench = SyntheticEventBenchmark(task="multiclass", n_subjects=1, duration_s=120.0, k=5, root=tmp_path / "corpus",
                                    probe=LinearProbe(grid=(0.1, 1.0)))
    assert bench.dataset.n_classes == 3
    assert (tmp_path / "corpus" / "sub-01" / "ses-01").is_dir()  # written to disk, memory-mapped
    scores = bench.evaluate(PipelineBaseline(high_gamma_pipeline(), name="hg"), protocol="linear_probe")
    assert scores["auc"] >= 0.85  # each label drives its own contacts: easier than event-vs-rest
