"""A real 2-process DDP run (gloo, CPU) over iEEGDataModule: no hang, disjoint windows per rank.

Lightning's plain ``strategy="ddp"`` re-launches the running script for rank 1, which cannot be
pytest itself; so this file is also a script: the test runs it in a subprocess, each rank writes
the windows it saw to a JSON file, and the test checks them. The Trainer keeps its default
``use_distributed_sampler=True``: the data module must turn the injection off by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EPOCHS = 2
BATCH = 8


def _run_rank(root: str, trials: str, out: str) -> None:
    import pytorch_lightning as pl
    import torch

    from neurocrane.data.datamodule import iEEGDataModule

    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.train_ids: dict[int, list[list[str]]] = {}
            self.val_ids: list[str] = []

        @staticmethod
        def _ids(batch):
            return [f"{s}/{e}/{t}" for s, e, t in zip(batch["subject_id"], batch["session_id"],
                                                      batch["start"].tolist(), strict=True)]

        def training_step(self, batch, batch_idx):
            self.train_ids.setdefault(self.current_epoch, []).append(self._ids(batch))
            x = batch["neural_data"].mean(dim=(1, 2)).unsqueeze(-1)
            return self.layer(x).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            if not self.trainer.sanity_checking:
                self.val_ids.extend(self._ids(batch))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = iEEGDataModule(trials, context_length=0.5, batch_size=BATCH, num_workers=1, val_split=0.25,
                        data_root_dir=root, seed=1)
    model = Recorder()
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps({
        "world_size": trainer.world_size,
        "train": {str(k): v for k, v in model.train_ids.items()},
        "val": model.val_ids,
        "train_sessions": [list(p) for p in dm.train_sessions],
        "n_train_windows": len(dm.train_dataset),
        "use_distributed_sampler": trainer._accelerator_connector.use_distributed_sampler,
    }))


def test_two_process_ddp_epoch_with_session_batches(tmp_path):
    from neurocrane.data.synthetic import make_synthetic_corpus

    root = tmp_path / "corpus"
    make_synthetic_corpus(root, n_subjects=2, sessions_per_subject=2, duration_s=12.0, sampling_rate=512.0,
                          n_shafts=2, contacts_per_shaft=4, seed=0)
    trials = tmp_path / "trials.csv"
    trials.write_text("subject,session\nsub-01,*\nsub-02,*\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(root), str(trials), str(out)],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert not ranks[0]["use_distributed_sampler"]  # the data module turned Lightning's injection off
    assert ranks[0]["train_sessions"] == ranks[1]["train_sessions"]  # same split on every rank
    n_windows = ranks[0]["n_train_windows"]
    orders = []
    for epoch in map(str, range(EPOCHS)):
        batches = [r["train"][epoch] for r in ranks]
        assert len(batches[0]) == len(batches[1]) > 0  # equal batch counts: no hang
        ids = [{w for b in rb for w in b} for rb in batches]
        assert ids[0].isdisjoint(ids[1])  # each rank sees its own windows
        for rb in batches:
            for b in rb:
                assert len(b) == BATCH and len({w.rsplit("/", 1)[0] for w in b}) == 1  # one session per batch
        seen = len(ids[0]) + len(ids[1])
        # drop_last drops < BATCH windows per session; equal counts drop at most one more batch
        assert n_windows - seen < BATCH * (len(ranks[0]["train_sessions"]) + 1)
        orders.append(batches[0])
    assert orders[0] != orders[1]  # set_epoch reached the sampler: a new order in epoch 2
    val = [set(r["val"]) for r in ranks]
    assert val[0] and val[1] and val[0].isdisjoint(val[1])
    train_sessions = {"/".join(p) for p in ranks[0]["train_sessions"]}
    assert not {w.rsplit("/", 1)[0] for v in val for w in v} & train_sessions  # no leak


if __name__ == "__main__":
    _run_rank(*sys.argv[1:4])
