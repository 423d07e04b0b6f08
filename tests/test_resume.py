"""Resume: a run killed after N steps continues from its last checkpoint with the same global
step, optimizer/scheduler state and random state, so its loss curve is the uninterrupted one."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from neurocrane.training import compose_config, train

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 4  # 16 windows of 0.5 s in the training session, 4 per batch
KILL_AT = STEPS_PER_EPOCH


def overrides(data_dir: str, out: str) -> list[str]:
    return [
        "experiment=pretrain_synthetic", f"paths.data_dir={data_dir}", f"output_dir={out}",
        "trainer.max_epochs=2", "data.corpus.n_subjects=1", "data.corpus.sessions_per_subject=2",
        "data.corpus.duration_s=8", "data.context_length=0.5", "data.batch_size=4", "data.num_workers=0",
        "data.val_split=0.5", "model.config.hidden_size=16", "model.config.num_layers=1", "model.config.num_heads=2",
        "model.config.intermediate_size=32", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1",
        "callbacks=minimal",
    ]


class KillAt(pl.Callback):
    """Ends the process abruptly (no clean-up, like a pre-empted job) when a step is about to start."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os._exit(17)


def run_until_killed(data_dir: str, out: str, step: int) -> None:
    train(compose_config(overrides(data_dir, out)), callbacks=[KillAt(step)])


def losses(run: Path) -> dict[int, float]:
    out = {}
    for path in sorted((run / "csv").glob("version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("train_loss"):
                    step = int(row["step"])
                    assert step not in out, f"step {step} logged twice"
                    out[step] = float(row["train_loss"])
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_killed_run_resumes_where_it_stopped(data_dir, tmp_path):
    reference = train(compose_config(overrides(str(data_dir), str(tmp_path / "ref"))))
    assert reference.global_step == 2 * STEPS_PER_EPOCH

    run = tmp_path / "killed"
    code = f"from tests.test_resume import run_until_killed; run_until_killed({str(data_dir)!r}, {str(run)!r}, {KILL_AT})"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 17, proc.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)  # resumable checkpoints hold no pickled objects
    assert state["global_step"] == KILL_AT and state["optimizer_states"][0]["state"]
    assert max(losses(run)) == KILL_AT - 1  # it really stopped there

    resumed = train(compose_config(overrides(str(data_dir), str(run))), resume=True)
    assert resumed.global_step == 2 * STEPS_PER_EPOCH
    curve, ref_curve = losses(run), losses(reference.output_dir)
    assert sorted(curve) == list(range(2 * STEPS_PER_EPOCH))  # no step repeated or skipped
    # the resumed half continues the very same curve (weights, Adam moments, schedule, RNG)
    for step in range(KILL_AT, 2 * STEPS_PER_EPOCH):
        assert curve[step] == pytest.approx(ref_curve[step], rel=1e-5, abs=1e-6), step
    assert resumed.metrics["val_loss"] == pytest.approx(reference.metrics["val_loss"], rel=1e-5)


def test_resume_from_an_explicit_checkpoint_path(data_dir, tmp_path):
    first = train(compose_config(overrides(str(data_dir), str(tmp_path / "a")) + ["trainer.max_epochs=1"]))
    second = train(
        compose_config(overrides(str(data_dir), str(tmp_path / "b"))), ckpt_path=first.last_checkpoint
    )
    assert first.global_step == STEPS_PER_EPOCH and second.global_step == 2 * STEPS_PER_EPOCH
    assert min(losses(second.output_dir)) == STEPS_PER_EPOCH  # the new run started after the loaded step
