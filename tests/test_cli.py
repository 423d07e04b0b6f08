"""The ``neurocrane`` command line: train (console script, python -m), describe, the command table,
errors, and lazy exports of the training API."""

import subprocess
import sys
from pathlib import Path

import pytest

import neurocrane as crane
from neurocrane import cli
from neurocrane.training import compose_config, resolve_pipeline

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "trainer.max_epochs=1",
    "data.corpus.n_subjects=1",
    "data.corpus.sessions_per_subject=2",
    "data.corpus.duration_s=12",
    "data.context_length=0.5",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.val_split=0.5",
    "model.config.hidden_size=16",
    "model.config.num_layers=1",
    "model.config.num_heads=2",
    "model.config.intermediate_size=32",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
]


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "neurocrane"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "neurocrane.cli"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    args = ["train", "experiment=pretrain_synthetic", *TINY, f"paths.data_dir={root / 'data'}", f"output_dir={root / 'run'}"]
    proc = subprocess.run(console_script() + args, cwd=REPO, capture_output=True, text=True, timeout=300)
    return root, args, proc


def test_neurocrane_train_exits_0_and_exports_the_requested_pipeline(cli_run):
    root, args, proc = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    export = root / "run" / "export" / "best"
    assert f"exported model: {export}" in proc.stdout
    requested = resolve_pipeline(compose_config(args[1:]).pipeline).fingerprint
    model = crane.BaseModel.from_pretrained(export)
    assert model.preprocess_pipeline.fingerprint == requested
    assert (root / "run" / ".hydra" / "config.yaml").is_file()  # Hydra's own record of the run


def test_describe_file_and_model_folder(cli_run, capsys):
    root, _, _ = cli_run
    assert cli.main(["describe", str(REPO / "pipelines" / "quickstart.yaml"), "--sampling-rate", "2048", "--duration", "1"]) == 0
    out = capsys.readouterr().out
    assert "spectrogram" in out and "(B, C, 2048) 2048 Hz" in out
    assert cli.main(["describe", str(root / "run" / "export" / "best")]) == 0
    out = capsys.readouterr().out
    assert "laplacian" in out and "512 Hz" in out  # the model's declared input spec is used
    with pytest.raises(SystemExit):
        cli.main(["describe", str(root / "missing.yaml")])
    assert "no such file" in capsys.readouterr().err


def test_train_errors_exit_nonzero_with_a_message(tmp_path):
    base = console_script() + ["train", "experiment=pretrain_synthetic", *TINY, f"paths.data_dir={tmp_path}"]
    proc = subprocess.run(base + ["+model.config.sampling_rate=2048", f"output_dir={tmp_path / 'r'}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "neurocrane train: error:" in proc.stderr and "add a resample step" in proc.stderr
    proc = subprocess.run(base + ["trainer.max_epoch=3"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "max_epoch" in proc.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_python_m_neurocrane_train_prints_the_composed_config():
    proc = subprocess.run(
        [sys.executable, "-m", "neurocrane.train", "experiment=finetune_synthetic", "--cfg", "job"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "task_name: finetune_synthetic" in proc.stdout and "BaseModel.from_pretrained" in proc.stdout


def test_command_table_is_extensible(capsys):
    seen = []
    cli.register_command("echo-test", lambda argv: seen.append(argv) or 3, "test command")
    try:
        assert cli.main(["echo-test", "a", "b"]) == 3 and seen == [["a", "b"]]
        assert cli.main(["--help"]) == 0 and "echo-test" in capsys.readouterr().out
    finally:
        cli.COMMANDS.pop("echo-test")
    assert cli.main(["trian"]) == 2 and "Did you mean 'train'" in capsys.readouterr().err


def test_import_neurocrane_does_not_import_lightning_and_train_stays_callable():
    code = (
        "import sys, neurocrane as crane\n"
        "assert 'pytorch_lightning' not in sys.modules\n"
        "from neurocrane.training import train, LightningModule\n"
        "assert crane.train is train and crane.LightningModule is LightningModule\n"
        "import neurocrane.train\n"  # the `python -m neurocrane.train` module shadows the attribute...
        "assert callable(crane.train)\n"  # ...but stays callable
        "import inspect; print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
