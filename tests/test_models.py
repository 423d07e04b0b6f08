"""Models: CraneConfig round-trips, BaseModel preprocessing/forward/features, safe and strict
loading, input errors, and the two reference models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import transformers

import neurocrane as crane
from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import (
    InputDTypeError,
    InputError,
    PipelineError,
    PipelineFormatError,
    SchemaVersionError,
    TransformValidationError,
    UnknownTransformError,
)
from neurocrane.models import (
    BaseModel,
    CraneConfig,
    ModelLoadError,
    SEEGTransformer,
    SEEGTransformerConfig,
    SpectralModel,
    UnknownModelTypeError,
    WeightsMismatchError,
    registered_models,
)
from neurocrane.pipeline import Pipeline, Transform
from neurocrane.preprocessing import CommonAverageReference, ZScore
from tests.helpers_models import (
    N_CHANNELS,
    RATE,
    SPECTRAL_BINS,
    signals,
    spectral_pipeline,
    time_pipeline,
    tiny_spectral,
    tiny_transformer,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[SEEGTransformer, Path]:
    model = tiny_transformer(seed=3)
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(folder)
    return model, folder


def _copy(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def _edit_config(folder: Path, edit) -> None:
    data = json.loads((folder / "config.json").read_text())
    edit(data)
    (folder / "config.json").write_text(json.dumps(data))


# -- CraneConfig ------------------------------------------------------------------------------
def test_config_round_trips_through_config_json_unchanged(tmp_path):
    pipe = time_pipeline()
    cfg = SEEGTransformerConfig(
        preprocessing=pipe.to_dict(), sampling_rate=RATE, n_channels=7, context_length=1.5,
        training_summary={"steps": 10, "data": ["s1", "s2"], "empty": {}}, hidden_size=24, num_heads=3,
    )
    cfg.save_pretrained(tmp_path / "a")
    first = (tmp_path / "a" / "config.json").read_text()
    again = SEEGTransformerConfig.from_pretrained(tmp_path / "a")
    again.save_pretrained(tmp_path / "b")
    assert (tmp_path / "b" / "config.json").read_text() == first
    assert again.preprocessing == pipe.to_dict()
    assert again.pipeline().fingerprint == pipe.fingerprint
    assert (again.sampling_rate, again.n_channels, again.context_length, again.hidden_size) == (RATE, 7, 1.5, 24)
    assert again.training_summary == {"steps": 10, "data": ["s1", "s2"], "empty": {}}
    assert again.input_spec == SignalSpec(shape=(None, 7, 192), sampling_rate=RATE)


def test_config_without_pipeline_means_identity():
    cfg = CraneConfig()
    pipe = cfg.pipeline()
    assert [type(step).__name__ for step in pipe] == ["Identity"]


def test_config_is_alias_safe_and_transformers_names_match():
    from neurocrane.models.config import PreTrainedConfig, PretrainedConfig

    assert PretrainedConfig is PreTrainedConfig
    assert issubclass(CraneConfig, transformers.PretrainedConfig)


@pytest.mark.parametrize(
    ("changes", "error", "needle"),
    [
        ({"hiden_size": 3}, PipelineFormatError, "did you mean 'hidden_size'"),
        ({"_target_": "os.system"}, PipelineFormatError, "_target_"),
        ({"neurocrane_config_version": 2}, SchemaVersionError, "Upgrade neurocrane"),
        ({"preprocessing": "car,zscore"}, PipelineFormatError, "pipeline dict"),
        ({"sampling_rate": -1.0}, PipelineFormatError, "sampling_rate"),
        ({"n_channels": 0}, PipelineFormatError, "n_channels"),
        ({"hidden_size": 10, "num_heads": 3}, PipelineFormatError, "divisible"),
        ({"token_type": "spectrogram"}, PipelineFormatError, "n_freqs"),
    ],
)
def test_config_refuses_bad_fields(changes, error, needle):
    with pytest.raises(error, match=needle):
        SEEGTransformerConfig(**changes)


def test_config_validates_its_pipeline_when_built():
    data = time_pipeline().to_dict()
    data["steps"][0]["op"] = "no_such_op"
    with pytest.raises(UnknownTransformError, match="no_such_op"):
        CraneConfig(preprocessing=data)


# -- the stored pipeline -------------------------------------------------------------------------
def test_preprocess_pipeline_is_cached_and_assignment_updates_config():
    model = tiny_transformer()
    first = model.preprocess_pipeline
    assert model.preprocess_pipeline is first
    assert first.fingerprint == time_pipeline().fingerprint
    new = Pipeline([ZScore(axes=("channel", "time"))])
    model.preprocess_pipeline = new
    assert model.config.preprocessing == new.to_dict()
    assert model.preprocess_pipeline.fingerprint == new.fingerprint
    model.config.preprocessing = time_pipeline().to_dict()  # editing the config rebuilds it
    assert model.preprocess_pipeline.fingerprint == time_pipeline().fingerprint
    with pytest.raises(PipelineFormatError, match="Pipeline"):
        model.preprocess_pipeline = ZScore()


def test_describe_works_on_a_loaded_model(saved):
    _, folder = saved
    loaded = BaseModel.from_pretrained(folder)
    text = loaded.preprocess_pipeline.describe(loaded.input_spec)
    assert "car" in text and "zscore" in text and "128 Hz" in text


# -- calling ---------------------------------------------------------------------------------------
def test_call_applies_preprocessing_then_forward():
    model = tiny_transformer()
    x = signals()
    out = model(x, sampling_rate=RATE)
    by_hand = model.forward(time_pipeline()(x, sampling_rate=RATE), sampling_rate=RATE)
    raw = model.forward(x, sampling_rate=RATE)
    assert torch.equal(out["hidden_states"], by_hand["hidden_states"])
    assert not torch.allclose(out["hidden_states"], raw["hidden_states"])
    assert set(out) >= {"logits", "hidden_states"} and "loss" not in out  # eval mode, no labels


def test_preprocessing_never_runs_twice():
    model = tiny_transformer()
    x = signals()
    batch = model.preprocess(x, sampling_rate=RATE)
    assert batch.applied == (model.preprocess_pipeline.fingerprint,)
    assert model.preprocess(batch) is batch
    assert torch.equal(model(batch)["hidden_states"], model(x, sampling_rate=RATE)["hidden_states"])
    assert torch.equal(model.extract_features(batch)["final"], model.extract_features(x, sampling_rate=RATE)["final"])


def test_a_batch_whose_recording_part_ran_resumes_at_the_window_part():
    model = tiny_transformer()
    x = signals()
    partly = Pipeline([CommonAverageReference()])(NeuralBatch(x, sampling_rate=RATE))
    full = model(x, sampling_rate=RATE)["hidden_states"]
    assert torch.equal(model(partly)["hidden_states"], full)


def test_hooks_see_the_preprocessed_batch_and_the_outputs():
    model = tiny_transformer()
    seen = {}

    def pre_hook(module, args, kwargs):
        seen["input"] = args[0]

    def post_hook(module, args, kwargs, output):
        seen["output"] = output

    h1 = model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    h2 = model.register_forward_hook(post_hook, with_kwargs=True)
    out = model(signals(), sampling_rate=RATE)
    h1.remove()
    h2.remove()
    assert isinstance(seen["input"], NeuralBatch)
    assert seen["input"].applied == (model.preprocess_pipeline.fingerprint,)
    assert seen["output"] is out


def test_dataloader_batch_dicts_are_accepted():
    model = tiny_transformer(objective="classification", num_labels=2)
    x = signals(batch=2)
    labels = torch.tensor([0, 1])
    mask = torch.ones(2, N_CHANNELS, dtype=torch.bool)
    batch = {"neural_data": x, "labels": labels, "sampling_rate": torch.tensor([RATE, RATE]),
             "channel_mask": mask, "subject_id": ["s1", "s1"], "session_id": ["a", "a"]}
    out = model(**batch)
    ref = model(x, sampling_rate=RATE, labels=labels)
    assert torch.equal(out["logits"], ref["logits"])
    assert torch.equal(out["loss"], ref["loss"])
    with pytest.raises(InputError, match="different sampling rates"):
        model(**{**batch, "sampling_rate": torch.tensor([RATE, 2 * RATE])})


# -- features ----------------------------------------------------------------------------------------
def test_extract_features_returns_every_layer_and_final():
    model = tiny_transformer(num_layers=2)
    x = signals()
    feats = model.extract_features(x, sampling_rate=RATE)
    assert list(feats) == ["layer_0", "layer_1", "layer_2", "final"]
    assert feats["final"].shape == (3, N_CHANNELS, 8, 16)
    assert torch.equal(feats["final"], model(x, sampling_rate=RATE)["hidden_states"])
    assert not torch.allclose(feats["layer_1"], feats["layer_2"])
    some = model.extract_features(x, layer_ids=[0, -1], sampling_rate=RATE)
    assert list(some) == ["layer_0", "layer_2", "final"]
    assert torch.equal(some["layer_2"], feats["layer_2"])
    with pytest.raises(InputError, match="out of range"):
        model.extract_features(x, layer_ids=[3], sampling_rate=RATE)
    with pytest.raises(InputError, match="list of ints"):
        model.extract_features(x, layer_ids=1, sampling_rate=RATE)


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors():
    model = tiny_transformer(n_channels=N_CHANNELS)
    x = signals()
    with pytest.raises(InputError, match=r"rank 4"):
        model(torch.randn(2, N_CHANNELS, 4, 128), sampling_rate=RATE)
    with pytest.raises(InputError, match="expects 128 Hz input, got 256 Hz"):
        model(x, sampling_rate=256.0)
    with pytest.raises(InputError, match="no sampling_rate"):
        model(x)
    with pytest.raises(InputError, match="expects 5 channels, got 6"):
        model(signals(channels=6), sampling_rate=RATE)
    with pytest.raises(InputDTypeError, match="float"):
        model(torch.ones(2, N_CHANNELS, 128, dtype=torch.int16), sampling_rate=RATE)
    with pytest.raises(InputError, match="no input"):
        model(sampling_rate=RATE)
    with pytest.raises(InputError, match="fewer than one"):
        model(signals(times=8), sampling_rate=RATE)


class _ToRate(Transform):
    """Test-only resampler (nearest sample) to a fixed rate: the pipeline 'may resample'."""

    op: ClassVar[str] = "tests.to_rate"
    rate: float = 128.0

    def output_spec(self, spec: SignalSpec) -> SignalSpec:
        n = spec.n_times
        if n is not None and spec.sampling_rate is not None:
            n = round(n * self.rate / spec.sampling_rate)
        return spec.replace(shape=(*spec.shape[:2], n), sampling_rate=self.rate)

    def apply(self, batch: NeuralBatch) -> NeuralBatch:
        n = round(batch.signals.shape[-1] * self.rate / batch.sampling_rate)
        idx = (torch.arange(n) * batch.sampling_rate / self.rate).long()
        return batch.replace(signals=batch.signals[..., idx], sampling_rate=self.rate)


def test_other_rates_are_accepted_when_the_pipeline_resamples():
    model = tiny_transformer()
    model.preprocess_pipeline = Pipeline([_ToRate(rate=RATE), ZScore()])
    x = signals(times=256)
    out = model(x, sampling_rate=2 * RATE)
    ref = model(x[..., ::2], sampling_rate=RATE)
    assert torch.equal(out["hidden_states"], ref["hidden_states"])


def test_missing_labels_when_a_loss_is_requested():
    model = tiny_transformer(objective="classification", num_labels=3)
    x = signals()
    with pytest.raises(InputError, match="needs labels"):
        model(x, sampling_rate=RATE, return_loss=True)
    outputs = model(x, sampling_rate=RATE)
    with pytest.raises(InputError, match="needs labels"):
        model.compute_loss(outputs, None)
    with pytest.raises(InputError, match=r"\[0, 2\]"):
        model(x, sampling_rate=RATE, labels=torch.tensor([0, 1, 3]))
    with pytest.raises(InputError, match="integer class indices"):
        model(x, sampling_rate=RATE, labels=torch.tensor([0.0, 1.0, 1.0]))
    loss = model(x, sampling_rate=RATE, labels=torch.tensor([0, 1, 2]))["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)


# -- reference models -------------------------------------------------------------------------------------
def test_masked_pretraining_loss_needs_no_labels_and_trains():
    model = tiny_transformer(dropout=0.0)
    x = signals()
    model.eval()
    a = model(x, sampling_rate=RATE, return_loss=True)["loss"]
    b = model(x, sampling_rate=RATE, return_loss=True)["loss"]
    assert torch.equal(a, b)  # eval-mode masking is reproducible
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    out = model(x, sampling_rate=RATE)
    assert "loss" in out and out["token_mask"].any()
    out["loss"].backward()
    before = model.token_proj.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.token_proj.weight)


def test_variable_channel_counts_and_masked_channels():
    model = tiny_transformer(dropout=0.0)
    x = signals(channels=4)
    assert model(x, sampling_rate=RATE)["pooled"].shape == (3, 16)
    assert model(signals(channels=9), sampling_rate=RATE)["pooled"].shape == (3, 16)
    padded = torch.cat([x, 1e3 * torch.randn(3, 1, x.shape[-1])], dim=1)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[:, -1] = False
    with_mask = model(padded, sampling_rate=RATE, channel_mask=mask)["pooled"]
    without = model(x, sampling_rate=RATE)["pooled"]
    torch.testing.assert_close(with_mask, without, rtol=1e-4, atol=1e-5)


def test_channel_positions_feed_the_channel_embedding():
    model = tiny_transformer()
    x = signals()
    pos = torch.randn(N_CHANNELS, 3) * 30
    a = model(x, sampling_rate=RATE)["pooled"]
    b = model(x, sampling_rate=RATE, channel_positions=pos)["pooled"]
    assert not torch.allclose(a, b)


def test_float64_input_runs():
    model = tiny_transformer()
    out = model(signals().double(), sampling_rate=RATE)
    assert out["hidden_states"].dtype == torch.float32


def test_spectral_model_and_token_type_spectrogram():
    model = tiny_spectral()
    x = signals()
    out = model(x, sampling_rate=RATE, labels=torch.tensor([0, 1, 2]))
    assert out["logits"].shape == (3, 3) and out["hidden_states"].shape == (3, N_CHANNELS, 8)
    out["loss"].backward()
    assert model.proj.weight.grad is not None
    feats = model.extract_features(x, sampling_rate=RATE)
    assert list(feats) == ["layer_0", "final"] and torch.equal(feats["final"], out["pooled"])
    model.preprocess_pipeline = time_pipeline()
    with pytest.raises(InputError, match="spectral data"):
        model(x, sampling_rate=RATE)
    spec_tf = tiny_transformer(token_type="spectrogram", n_freqs=SPECTRAL_BINS, preprocessing=spectral_pipeline().to_dict())
    assert spec_tf(x, sampling_rate=RATE)["hidden_states"].shape == (3, N_CHANNELS, 9, 16)


# -- registry ----------------------------------------------------------------------------------------
def test_models_register_by_model_type_and_with_automodel():
    models = registered_models()
    assert models["neurocrane_seeg_transformer"] is SEEGTransformer
    assert models["neurocrane_spectral_linear"] is SpectralModel
    assert transformers.AutoConfig.for_model("neurocrane_seeg_transformer").__class__ is SEEGTransformerConfig

    class NoTypeConfig(CraneConfig):
        pass

    with pytest.raises(TypeError, match="model_type"):

        class NoType(SEEGTransformer):  # noqa: F841
            config_class = NoTypeConfig

    class ClashConfig(CraneConfig):
        model_type: ClassVar[str] = "neurocrane_seeg_transformer"

    with pytest.raises(TypeError, match="already registered"):

        class Clash(SEEGTransformer):  # noqa: F841
            config_class = ClashConfig


# -- loading ------------------------------------------------------------------------------------------
def test_base_auto_and_subclass_loading_agree(saved):
    model, folder = saved
    x = signals()
    ref = model(x, sampling_rate=RATE)["hidden_states"]
    loaded = [
        BaseModel.from_pretrained(folder),
        transformers.AutoModel.from_pretrained(folder),
        SEEGTransformer.from_pretrained(folder),
        crane.BaseModel.from_pretrained(str(folder)),
    ]
    for m in loaded:
        assert type(m) is SEEGTransformer
        assert not m.training
        assert torch.equal(m(x, sampling_rate=RATE)["hidden_states"], ref)
    assert Pipeline.from_pretrained(folder).fingerprint == model.preprocess_pipeline.fingerprint
    with pytest.raises(UnknownModelTypeError, match="not a SpectralModel"):
        SpectralModel.from_pretrained(folder)


@pytest.mark.parametrize(
    ("edit", "error", "needle"),
    [
        (lambda c: c["preprocessing"]["steps"][0].update(op="carr"), UnknownTransformError, "Did you mean 'car'"),
        (lambda c: c["preprocessing"]["steps"][1].update(clipp=3.0), TransformValidationError, "Did you mean 'clip'"),
        (lambda c: c["preprocessing"].update(version=99), SchemaVersionError, "schema version 99"),
        (lambda c: c.update(neurocrane_config_version=9), SchemaVersionError, "config schema version 9"),
        (lambda c: c["preprocessing"]["steps"][0].update(_target_="os.system"), PipelineFormatError, "_target_"),
        (lambda c: c.update(_target_="builtins.eval"), PipelineFormatError, "_target_"),
        (lambda c: c.update(hiden_size=8), PipelineFormatError, "hiden_size"),
        (lambda c: c.update(model_type="lab_x_model", model_package="lab_x"), UnknownModelTypeError, "lab_x"),
    ],
)
@pytest.mark.parametrize("loader", ["base", "auto"])
def test_tampered_config_fails_before_any_weight_is_read(saved, tmp_path, edit, error, needle, loader):
    _, folder = saved
    bad = _copy(folder, tmp_path)
    _edit_config(bad, edit)
    # With the weights gone, reaching the weights would raise ModelLoadError/OSError instead.
    (bad / "model.safetensors").unlink()
    if loader == "auto":
        if error is UnknownModelTypeError:
            error = (ValueError, KeyError)  # transformers' own message for unknown model types
        with pytest.raises(error):
            transformers.AutoModel.from_pretrained(bad)
    else:
        with pytest.raises(error, match=needle):
            BaseModel.from_pretrained(bad)
    assert issubclass(PipelineFormatError, PipelineError)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [({"num_layers": 2}, "missing 12 weight"), ({"hidden_size": 32}, "wrong shape")],
)
def test_weights_that_do_not_fit_are_refused(saved, tmp_path, changes, needle):
    _, folder = saved
    bad = _copy(folder, tmp_path)
    _edit_config(bad, lambda c: c.update(changes))
    with pytest.raises(WeightsMismatchError, match=needle):
        BaseModel.from_pretrained(bad)


def test_unexpected_weights_are_refused_and_strict_false_warns(tmp_path):
    big = tiny_transformer(num_layers=2)
    big.save_pretrained(tmp_path / "big")
    _edit_config(tmp_path / "big", lambda c: c.update(num_layers=1))
    with pytest.raises(WeightsMismatchError, match="unexpected"):
        BaseModel.from_pretrained(tmp_path / "big")
    with pytest.warns(UserWarning, match="unexpected"):
        small = BaseModel.from_pretrained(tmp_path / "big", strict=False)
    assert torch.equal(small.token_proj.weight, big.token_proj.weight)


def test_half_written_and_unsafe_model_folders(saved, tmp_path):
    _, folder = saved
    no_weights = _copy(folder, tmp_path, "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="incomplete"):
        BaseModel.from_pretrained(no_weights)
    truncated = _copy(folder, tmp_path, "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="incomplete or corrupt"):
        BaseModel.from_pretrained(truncated)
    no_config = _copy(folder, tmp_path, "no_config")
    (no_config / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        BaseModel.from_pretrained(no_config)
    pickled = _copy(folder, tmp_path, "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        BaseModel.from_pretrained(pickled)
    with pytest.raises(ModelLoadError, match="weights_only"):
        BaseModel.from_pretrained(folder, weights_only=False)
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        BaseModel.from_pretrained(folder, trust_remote_code=True)
    with pytest.raises(ModelLoadError, match="no model folder"):
        BaseModel.from_pretrained(tmp_path / "does" / "not" / "exist")


def test_save_is_atomic_and_replaces_older_saves(tmp_path, monkeypatch):
    target = tmp_path / "model"
    old = tiny_transformer(seed=1)
    old.save_pretrained(target)
    new = tiny_transformer(seed=2)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("transformers.modeling_utils.safe_save_file", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        new.save_pretrained(target)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no half-written leftovers
    reloaded = BaseModel.from_pretrained(target)
    assert torch.equal(reloaded.token_proj.weight, old.token_proj.weight)
    new.save_pretrained(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert torch.equal(BaseModel.from_pretrained(target).token_proj.weight, new.token_proj.weight)
    with pytest.raises(ModelLoadError, match="safetensors"):
        new.save_pretrained(tmp_path / "x", safe_serialization=False)
