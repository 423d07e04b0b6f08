"""2-process CPU DDP training (gloo) through the real launcher: `python -m neurocrane.train
trainer=ddp_cpu` re-launches itself for rank 1 (Lightning's subprocess launcher with Hydra)."""

import json
import subprocess
import sys
from pathlib import Path

import neurocrane as crane
from neurocrane.training import compose_config, resolve_pipeline

REPO = Path(__file__).resolve().parents[1]


def test_two_process_cpu_ddp_trains_and_exports(tmp_path):
    out = tmp_path / "run"
    args = [
        "experiment=pretrain_synthetic", "trainer=ddp_cpu", "trainer.max_epochs=2",
        f"paths.data_dir={tmp_path / 'data'}", f"output_dir={out}",
        # 3 sessions of 12 s: 2 train (48 windows of 0.5 s), 1 validation
        "data.corpus.n_subjects=1", "data.corpus.sessions_per_subject=3", "data.corpus.duration_s=12",
        "data.context_length=0.5", "data.batch_size=4", "data.num_workers=0", "data.val_split=0.34",
        "model.config.hidden_size=16", "model.config.num_layers=1", "model.config.num_heads=2",
        "model.config.intermediate_size=32", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "neurocrane.train", *args], cwd=REPO, capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    assert proc.stdout.count("exported model:") == 1  # reported by rank 0 only
    # rank 1 was started by Lightning's launcher into the same run folder
    assert (out / "train_ddp_process_1.log").is_file()
    config = json.loads((out / "export" / "best" / "config.json").read_text())
    summary = config["training_summary"]
    # 48 training windows / 4 per batch = 12 batches per epoch, split over 2 ranks: 6 steps each
    assert summary["world_size"] == 2
    assert json.loads((out / "export" / "last" / "config.json").read_text())["training_summary"]["global_step"] == 12
    model = crane.BaseModel.from_pretrained(out / "export" / "best")
    assert model.preprocess_pipeline.fingerprint == resolve_pipeline(compose_config(args).pipeline).fingerprint
    assert (out / "checkpoints" / "last.ckpt").is_file()
