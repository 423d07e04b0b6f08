"""evaluate(): several protocols and baselines, the results object (table, JSON, Markdown, PNG),
the result cache, the benchmark registry, and the linear probe against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from neurocrane.batch import SignalSpec
from neurocrane.evaluation import (
    BenchmarkError,
    EvaluationResults,
    LinearProbe,
    PipelineBaseline,
    ResultCache,
    SyntheticEventBenchmark,
    build_benchmark,
    evaluate,
    high_gamma_pipeline,
    weights_hash,
)
from neurocrane.models import SpectralModel, SpectralModelConfig
from neurocrane.pipeline import Pipeline
from neurocrane.preprocessing import Notch, Spectrogram

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*LeafSpec")]

CFG = {"kind": "synthetic_events", "name": "events", "n_subjects": 2, "duration_s": 50.0,
       "corpus_kwargs": {"nan_gap_probability": 0.0}, "probe": None}


def model() -> SpectralModel:
    pipe = Pipeline([Notch(line_freq=60.0), Spectrogram(freq_range=(0.0, 150.0), log=True)])
    n_freqs = pipe.output_spec(SignalSpec(shape=(None, 8, 512), sampling_rate=512.0)).shape[2]
    torch.manual_seed(0)
    return SpectralModel(SpectralModelConfig(n_freqs=n_freqs, hidden_size=8, num_labels=2, preprocessing=pipe.to_dict()))


@pytest.fixture(scope="module")
def bench():
    cfg = dict(CFG)
    cfg.pop("probe")
    return build_benchmark({**cfg, "probe": LinearProbe(grid=(0.1, 1.0))})


@pytest.fixture(scope="module")
def results(bench):
    return evaluate(model(), [bench], protocols=["zero_shot", "linear_probe", "finetune"], model_name="ref",
                    baselines=[high_gamma_pipeline()], progress=True)


def test_evaluate_runs_every_protocol_and_the_baseline(results, bench):
    keys = results.keys()
    assert ("ref", "events", "zero_shot") in keys and ("ref", "events", "finetune") in keys
    assert ("ref", "events", "linear_probe") in keys
    base = [k for k in keys if k[0].startswith("baseline:")]
    assert base and base[0][2] == "linear_probe"
    for key in keys:
        m = results.metrics(*key)
        assert set(m) == {"auc", "accuracy", "balanced_accuracy", "f1"}
        per_subject = results.subject_scores(*key, "accuracy")
        assert set(per_subject) == set(bench.dataset.table.subjects)
    # the baseline's pooled score is what the benchmark alone gives for the same pipeline
    alone = bench.evaluate(PipelineBaseline(high_gamma_pipeline()), protocol="linear_probe")
    assert results.metrics(*base[0]) == pytest.approx(alone)


def test_results_table_json_markdown_and_png(results, tmp_path):
    text = str(results)
    assert "linear_probe" in text and "finetune" in text and "95% CI" in text
    path = results.save_json(tmp_path / "results.json")
    back = EvaluationResults.load(path)
    assert back.keys() == results.keys()
    for key in results.keys():
        assert back.metrics(*key) == pytest.approx(results.metrics(*key), nan_ok=True)
    data = json.loads(path.read_text())
    assert data["summary"] and {"model", "benchmark", "protocol", "metric", "pooled", "subjects"} <= set(data["summary"][0])
    md = results.save_markdown(tmp_path / "results.md").read_text()
    assert md.startswith("| model | benchmark | protocol |") and md.count("\n") >= 2 + len(results.summary())
    png = tmp_path / "results.png"
    results.plot(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_unsupported_protocols_are_listed_as_skipped(bench):
    from neurocrane.evaluation import WindowBenchmark

    probe_only = WindowBenchmark("probe-only", bench.dataset, protocols=["linear_probe"], probe=LinearProbe(grid=(1.0,)))
    res = evaluate(model(), probe_only, protocols=["linear_probe", "finetune"], model_name="m")
    assert res.keys() == [("m", "probe-only", "linear_probe")]
    assert res.skipped and res.skipped[0][:3] == ("m", "probe-only", "finetune")
    assert "not run" in str(res)


def test_evaluate_checks_every_model_before_training(bench, monkeypatch):
    from neurocrane.models import SEEGTransformer, SEEGTransformerConfig
    from neurocrane.preprocessing import ZScore

    bad = SEEGTransformer(SEEGTransformerConfig(patch_size=64, hidden_size=16, num_layers=1, num_heads=2,
                                                intermediate_size=32, sampling_rate=2048.0,
                                                preprocessing=Pipeline([ZScore()]).to_dict()))
    calls = []
    monkeypatch.setattr(bench, "_finetune", lambda *a, **k: calls.append(1))
    with pytest.raises(BenchmarkError, match="2048 Hz"):
        evaluate(bad, [bench], protocols=["finetune"])
    assert calls == []


def test_cache_skips_finished_work_and_misses_on_changes(bench, tmp_path):
    m = model()
    first = evaluate(m, [bench], protocols=["linear_probe"], model_name="m", cache_dir=tmp_path)
    assert len(ResultCache(tmp_path)) == len(bench.split_names())

    def boom(*args, **kwargs):
        raise AssertionError("a cached fold was recomputed")

    original = bench._run_fold
    bench._run_fold = boom
    try:
        again = evaluate(m, [bench], protocols=["linear_probe"], model_name="m", cache_dir=tmp_path)
    finally:
        bench._run_fold = original
    assert again.metrics("m", "events", "linear_probe") == pytest.approx(first.metrics("m", "events", "linear_probe"))
    assert all(r.info.get("cached") for r in again.records)
    changed = model()
    with torch.no_grad():
        changed.proj.weight.add_(0.1)
    assert weights_hash(changed) != weights_hash(m)
    evaluate(changed, [bench], protocols=["linear_probe"], model_name="m", cache_dir=tmp_path)
    assert len(ResultCache(tmp_path)) == 2 * len(bench.split_names())  # new weights: new entries


def test_registry_refuses_import_paths_and_unknown_kinds():
    with pytest.raises(BenchmarkError, match="_target_"):
        build_benchmark({"_target_": "os.system", "kind": "synthetic_events"})
    with pytest.raises(BenchmarkError, match="unknown benchmark kind"):
        build_benchmark({"kind": "nope"})
    with pytest.raises(BenchmarkError, match="bad arguments"):
        build_benchmark({"kind": "synthetic_events", "n_subjectz": 2})
    with pytest.raises(BenchmarkError, match="nothing to run"):
        evaluate(None, [SyntheticEventBenchmark(n_subjects=1, duration_s=20.0)], protocols=["zero_shot"])


def test_linear_probe_matches_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 12)) * rng.uniform(0.1, 10, size=12)
    y = rng.integers(0, 3, size=90)
    x[:, 0] += y * 2.0
    xs = StandardScaler().fit_transform(x)
    probe = LinearProbe("classification", default=0.5).fit(x, y)
    sk = LogisticRegression(C=0.5, max_iter=10000, tol=1e-10).fit(xs, y)
    assert np.abs(probe.decision_function(x) - sk.predict_proba(xs)).max() < 1e-4
    t = x[:, 0] * 0.5 + rng.normal(size=90)
    ridge = LinearProbe("regression", default=2.0).fit(x, t)
    assert np.allclose(ridge.predict(x), Ridge(alpha=2.0).fit(xs, t).predict(xs), atol=1e-8)
    # the strength is chosen on val: the grid value with the best val score is kept
    chosen = LinearProbe("classification", grid=(1e-4, 1.0)).fit(x[:60], y[:60], x[60:], y[60:])
    assert chosen.chosen == max(chosen.val_scores, key=chosen.val_scores.get)
    with pytest.raises(Exception, match="integer class ids"):
        LinearProbe("classification").fit(x, t)


def test_cli_evaluate_writes_results(tmp_path, capsys):
    from neurocrane.cli import main

    model().save_pretrained(tmp_path / "model")
    code = main(["evaluate", str(tmp_path / "model"), "benchmark.n_subjects=1", "benchmark.duration_s=40",
                 "benchmark.k=null", "progress=false", f"output_dir={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    assert code == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.json", "results.md", "results.png"}
    assert "linear_probe" in capsys.readouterr().out
    assert EvaluationResults.load(tmp_path / "out" / "results.json").keys()[0][2] == "linear_probe"
    assert main(["evaluate", str(tmp_path / "model"), "benchmark.n_subjectz=1"]) == 2  # unknown key: clear error
    assert "n_subjectz" in capsys.readouterr().err
