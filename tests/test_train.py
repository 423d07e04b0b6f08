"""train(cfg): tiny pretraining and fine-tuning runs on the synthetic corpus, the Hugging Face
export, the run record, and bad configs that must stop before training."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import neurocrane as crane
from neurocrane.training import TrainingConfigError, compose_config, resolve_pipeline, train

# A corpus and model small enough for CI (1 subject x 2 sessions x 24 s, 0.5 s windows).
TINY = [
    "trainer.max_epochs=1",
    "data.corpus.n_subjects=1",
    "data.corpus.sessions_per_subject=2",
    "data.corpus.duration_s=24",
    "data.context_length=0.5",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.val_split=0.5",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
]
TINY_MODEL = [
    "model.config.hidden_size=16",
    "model.config.num_layers=1",
    "model.config.num_heads=2",
    "model.config.intermediate_size=32",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def overrides(data_dir: Path, out: Path, *extra: str, experiment: str = "pretrain_synthetic") -> list[str]:
    model = TINY_MODEL if experiment == "pretrain_synthetic" else []
    return [f"experiment={experiment}", f"paths.data_dir={data_dir}", f"output_dir={out}", *TINY, *model, *extra]


@pytest.fixture(scope="module")
def pretrained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "run"
    cfg = compose_config(overrides(data_dir, out))
    return cfg, train(cfg)


def test_pretrain_exports_a_model_with_the_requested_pipeline(pretrained):
    cfg, result = pretrained
    export_dir, metrics = result  # unpacks like a tuple
    assert export_dir == result.output_dir / "export" / "best"
    requested = resolve_pipeline(cfg.pipeline).fingerprint
    model = crane.BaseModel.from_pretrained(export_dir)
    assert type(model).__name__ == "SEEGTransformer"
    assert model.preprocess_pipeline.fingerprint == requested == result.pipeline_fingerprint
    assert (export_dir / "model.safetensors").is_file() and (export_dir / "README.md").is_file()
    assert requested in (export_dir / "README.md").read_text()
    # the config records what the model was trained on
    assert model.config.sampling_rate == 512.0 and model.config.context_length == 0.5
    summary = model.config.training_summary
    assert summary["global_step"] == result.global_step == 6  # 24 windows / 8 per batch, one epoch, 1 session
    assert summary["pipeline_fingerprint"] == requested and "_target_" not in json.dumps(summary)
    assert set(metrics) >= {"train_loss", "val_loss"} and all(v == v for v in metrics.values())
    # the run folder holds the pipeline record, the resolved config, logs and a resumable checkpoint
    run = result.output_dir
    assert crane.Pipeline.load(run / "pipeline.yaml").fingerprint == requested
    assert (run / "pipeline_fingerprint.txt").read_text().strip() == requested
    assert "spectrogram" in (run / "pipeline.txt").read_text()
    assert "${" not in (run / "train_config.yaml").read_text()  # resolved once
    assert Path(result.last_checkpoint).name == "last.ckpt"
    rows = (next((run / "csv").glob("version_*")) / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch") and "train_loss" in rows[0] and len(rows) > 6


def test_finetune_from_the_export_keeps_the_pipeline(pretrained, data_dir, tmp_path):
    _, result = pretrained
    cfg = compose_config(
        overrides(
            data_dir, tmp_path / "ft", f"model.pretrained_model_name_or_path={result.export_dir}",
            "data.context_length=0.5", "data.batch_size=4", experiment="finetune_synthetic",
        )
    )
    tuned = train(cfg)
    model = crane.BaseModel.from_pretrained(tuned.export_dir)
    assert model.config.objective == "classification"
    assert model.preprocess_pipeline.fingerprint == result.pipeline_fingerprint
    before = load_file(str(result.export_dir / "model.safetensors"))
    after = load_file(str(tuned.export_dir / "model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "val_acc" in tuned.metrics and 0.0 <= tuned.metrics["val_acc"] <= 1.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["+model.config.sampling_rate=2048"], r"expects input sampled at 2048 Hz, the data are at 512 Hz.*resampl"),
        (["model.config.n_freqs=40"], r"built for 40 frequency bins, the pipeline gives 51"),
        (["pipeline=file", "pipeline.file=no_such_pipeline"], r"no pipeline file 'no_such_pipeline'.*Available names"),
        (["resume=true"], r"no checkpoint at .*last\.ckpt"),
        (["data.batch_size=1000"], r"data cannot be loaded: .*smaller batch_size"),
    ],
)
def test_mismatches_stop_before_training(data_dir, tmp_path, extra, message):
    out = tmp_path / "run"
    with pytest.raises(TrainingConfigError, match=message):
        train(compose_config(overrides(data_dir, out, *extra)))
    assert not (out / "checkpoints").exists() and not (out / "export").exists()


def test_pipeline_file_failing_validation_names_the_field(data_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: neurocrane.pipeline\nversion: 1\nsteps:\n  - {op: bandpass, low: 300, high: 100}\n")
    with pytest.raises(TrainingConfigError, match=r"(?s)failed validation.*low.*must be below high"):
        train(compose_config(overrides(data_dir, tmp_path / "run", "pipeline=file", f"pipeline.file={bad}")))
    inline_typo = ['pipeline.inline={format: neurocrane.pipeline, version: 1, steps: [{op: zscore, axs: [time]}]}']
    with pytest.raises(TrainingConfigError, match="axs"):
        train(compose_config(overrides(data_dir, tmp_path / "run", *inline_typo)))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("overrides_", "message"),
    [
        (["experiment=no_such_recipe"], r"experiment/no_such_recipe"),
        (["trainer.max_epoch=1"], r"max_epoch"),
        (["optimzer=sgd"], r"optimzer"),
        (["model=no_such_model"], r"model/no_such_model"),
    ],
)
def test_unknown_groups_and_keys(overrides_, message):
    with pytest.raises(TrainingConfigError, match=message):
        compose_config(overrides_)


def test_plain_dict_config_is_checked(tmp_path):
    cfg = dict(compose_config(["experiment=pretrain_synthetic"]))
    cfg["trainr"] = {}
    with pytest.raises(TrainingConfigError, match="did you mean 'trainer'"):
        train(cfg)
    with pytest.raises(TrainingConfigError, match="pretrained_model_name_or_path"):
        train(compose_config(["experiment=finetune_synthetic", f"output_dir={tmp_path}"]))


def test_lightning_cloud_logger_tip_is_dropped_and_other_lines_are_kept(pretrained):
    import logging

    from neurocrane.training.trainer import _TIP_FILTER

    assert _TIP_FILTER in logging.getLogger("pytorch_lightning.utilities.rank_zero").filters  # installed by train()

    def record(message):
        return logging.LogRecord("pytorch_lightning.utilities.rank_zero", logging.INFO, __file__, 1, message, (), None)

    assert not _TIP_FILTER.filter(record("💡 Tip: ... try installing [litlogger](https://pypi.org/project/litlogger/)"))
    assert _TIP_FILTER.filter(record("GPU available: False, used: False"))
