"""Benchmark: SPEC's Lab D flow, fine-tuning only when required, no weight carry-over between
benchmarks, and clear errors before any training for data a model cannot take."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocrane.batch import SignalSpec
from neurocrane.evaluation import (
    Benchmark,
    BenchmarkError,
    SyntheticEventBenchmark,
    WindowBenchmark,
    WindowBenchmarkData,
    weights_hash,
)
from neurocrane.models import BaseModel, SpectralModel, SpectralModelConfig
from neurocrane.pipeline import Pipeline
from neurocrane.preprocessing import Notch, Spectrogram

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*LeafSpec")]

CORPUS = {"nan_gap_probability": 0.0}


def spectral_model(sampling_rate: float = 512.0, n_channels: int | None = None, seed: int = 0) -> SpectralModel:
    pipe = Pipeline([Notch(line_freq=60.0), Spectrogram(freq_range=(0.0, 150.0), log=True)])
    n_freqs = pipe.output_spec(SignalSpec(shape=(None, 8, 512), sampling_rate=sampling_rate)).shape[2]
    torch.manual_seed(seed)
    return SpectralModel(SpectralModelConfig(n_freqs=n_freqs, num_labels=2, preprocessing=pipe.to_dict(),
                                             sampling_rate=sampling_rate, n_channels=n_channels))


def patch_transformer(sampling_rate: float = 512.0, n_channels: int | None = None):
    from neurocrane.models import SEEGTransformer, SEEGTransformerConfig
    from neurocrane.preprocessing import ZScore

    torch.manual_seed(0)
    return SEEGTransformer(SEEGTransformerConfig(patch_size=64, hidden_size=16, num_layers=1, num_heads=2,
                                                 intermediate_size=32, sampling_rate=sampling_rate, n_channels=n_channels,
                                                 preprocessing=Pipeline([ZScore()]).to_dict()))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lab_a") / "seeg-foundation-v1"
    spectral_model().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def bench() -> SyntheticEventBenchmark:
    return SyntheticEventBenchmark("seizure-like", n_subjects=2, duration_s=50.0, requires_finetuning=True,
                                   corpus_kwargs=CORPUS)


@pytest.fixture(scope="module")
def other_bench() -> SyntheticEventBenchmark:
    return SyntheticEventBenchmark("other", n_subjects=1, duration_s=50.0, corpus_seed=3, requires_finetuning=True,
                                   corpus_kwargs=CORPUS)


class CountingFinetunes:
    def __init__(self, monkeypatch, bench: Benchmark):
        self.calls = 0
        original = bench._finetune

        def wrapped(model, data=None):
            self.calls += 1
            return original(model, data)

        monkeypatch.setattr(bench, "_finetune", wrapped)


def test_lab_d_flow_from_saved_model(saved_model, bench, monkeypatch):
    model = BaseModel.from_pretrained(saved_model)
    before = weights_hash(model)
    counter = CountingFinetunes(monkeypatch, bench)
    results = bench.evaluate(model)  # requires fine-tuning: fine-tunes a copy
    assert counter.calls == len(bench.dataset.splits) == 1
    assert set(results) == {"accuracy", "f1", "auc", "balanced_accuracy"}
    assert all(0.0 <= v <= 1.0 for v in results.values())
    assert weights_hash(model) == before  # the caller's model is untouched
    zero = bench.evaluate(model, force_zero_shot=True)
    assert counter.calls == 1  # no fine-tuning when forced zero-shot
    assert set(zero) == set(results)
    # zero-shot scores the untouched model: same as scoring a fresh load of the same file
    again = bench.evaluate(BaseModel.from_pretrained(saved_model), force_zero_shot=True)
    assert zero == again


def test_no_finetuning_when_not_required(saved_model, monkeypatch):
    bench = SyntheticEventBenchmark("zs", n_subjects=1, duration_s=40.0, requires_finetuning=False, corpus_kwargs=CORPUS)
    counter = CountingFinetunes(monkeypatch, bench)
    bench.evaluate(BaseModel.from_pretrained(saved_model))
    assert counter.calls == 0


def test_no_weight_carry_over_between_benchmarks(saved_model, bench, other_bench):
    alone = other_bench.evaluate(BaseModel.from_pretrained(saved_model))
    model = BaseModel.from_pretrained(saved_model)
    first = bench.evaluate(model)
    in_a_row = other_bench.evaluate(model)
    assert in_a_row == alone
    assert bench.evaluate(BaseModel.from_pretrained(saved_model)) == first  # and the first is reproducible


def test_finetuning_changes_a_copy_with_a_new_head(bench):
    model = spectral_model()
    model.config.num_labels = 3  # a head that does not fit the binary task
    model.classifier = torch.nn.Linear(model.config.hidden_size, 3)
    tuned = bench._finetune(model, bench.folds(model)[0])
    assert tuned is not model
    assert tuned.classifier.out_features == 2 and model.classifier.out_features == 3
    assert not torch.equal(tuned.proj.weight, model.proj.weight)  # it was trained, the original was not


def test_model_with_wrong_sampling_rate_fails_before_training(bench, monkeypatch):
    counter = CountingFinetunes(monkeypatch, bench)
    with pytest.raises(BenchmarkError, match=r"cannot take the data of sub-01/ses-01 \(512 Hz.*expects 1000 Hz"):
        bench.evaluate(patch_transformer(sampling_rate=1000.0))
    assert counter.calls == 0
    # a pipeline defined in seconds and Hz (spectrogram) maps both rates to the same output: accepted
    bench.check_model(spectral_model(sampling_rate=1000.0), "finetune")


def test_model_with_wrong_channel_count_fails_before_training(bench, monkeypatch):
    counter = CountingFinetunes(monkeypatch, bench)
    with pytest.raises(BenchmarkError, match="channels"):
        bench.evaluate(spectral_model(n_channels=16))
    assert counter.calls == 0


def test_zero_shot_needs_logits_per_class(bench):
    model = spectral_model()
    model.config.num_labels = 3
    model.classifier = torch.nn.Linear(model.config.hidden_size, 3)
    with pytest.raises(BenchmarkError, match=r"logits of shape \(batch, 2\)"):
        bench.evaluate(model, force_zero_shot=True)


def _recording(subject="sub-01", session="ses-01", seconds=20.0, rate=256.0):
    from neurocrane.data import Recording

    rng = np.random.default_rng(0)
    return Recording.from_array(rng.normal(size=(4, int(seconds * rate))).astype(np.float32), rate,
                                ["A1", "A2", "A3", "A4"], subject_id=subject, session_id=session)


def test_empty_split_and_wrong_labels_fail_at_construction():
    rec = _recording()
    starts = np.arange(0.0, 18.0, 1.0)
    labels = np.arange(starts.size) % 2
    with pytest.raises(BenchmarkError, match="cannot split"):  # one subject: no cross-subject test part
        WindowBenchmarkData([rec], [(starts, labels)], 1.0, split="cross_subject")
    with pytest.raises(BenchmarkError, match="cannot split"):  # gap as long as the session
        WindowBenchmarkData([rec], [(starts, labels)], 1.0, split_kwargs={"gap": 30.0})
    with pytest.raises(BenchmarkError, match="integer class ids"):
        WindowBenchmarkData([rec], [(starts, labels + 0.5)], 1.0)
    with pytest.raises(BenchmarkError, match="label_map"):
        WindowBenchmarkData([rec], [(starts, np.where(labels, "a", "b"))], 1.0)
    with pytest.raises(BenchmarkError, match="outside the recording"):
        WindowBenchmarkData([rec], [(starts + 5.0, labels)], 1.0).windows_for(None)
    one_class = WindowBenchmark("one", WindowBenchmarkData([rec], [(starts, np.zeros(starts.size, int))], 1.0))
    with pytest.raises(BenchmarkError, match="at least two"):
        one_class.run(spectral_model(sampling_rate=256.0), "linear_probe")


def test_unsupported_protocol_is_refused(bench):
    limited = WindowBenchmark("limited", bench.dataset, protocols=["linear_probe"])
    with pytest.raises(BenchmarkError, match="does not support"):
        limited.run(spectral_model(), "finetune")
    with pytest.raises(BenchmarkError, match="unknown protocol"):
        limited.run(spectral_model(), "few_shot")


def test_spec_style_subclass_runs_zero_shot_and_finetune():
    """A benchmark written the SPEC way: only _default_finetune_config and _evaluate_split."""
    rec = _recording(rate=512.0)
    starts = np.arange(0.0, 18.0, 1.0)
    data = WindowBenchmarkData([rec], [(starts, np.arange(starts.size) % 2)], 1.0, split_kwargs={"gap": 0.0})
    fold = data.fold(data.splits[0])

    class Dataset:
        train, val, test = fold.train, fold.val, fold.test

        def get_datamodule(self):
            return fold.get_datamodule(batch_size=4)

    class CountWindows(Benchmark):
        def _default_finetune_config(self):
            return {"optimizer": {"_target_": "torch.optim.SGD", "lr": 0.0}, "trainer": {"max_epochs": 1}}

        def _evaluate_split(self, model, split_data):
            return {"n": float(len(split_data))}

    b = CountWindows("spec-style", Dataset(), requires_finetuning=True)
    assert b.evaluate(spectral_model()) == {"n": float(len(fold.test))}
    assert b.evaluate(spectral_model(), force_zero_shot=True) == {"n": float(len(fold.test))}
