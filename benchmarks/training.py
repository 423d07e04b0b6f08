"""Training overhead: the LightningModule path vs a plain PyTorch loop, same model, data and optimizer.

Both paths train the reference SEEGTransformer (patch tokens, masked reconstruction, its
CAR + z-score pipeline applied inside the model call) with AdamW on the same in-memory batch
dicts, on CPU. The Lightning path is ``Trainer.fit`` on :class:`neurocrane.training.LightningModule`
(logging ``train_loss`` every step, no checkpoints, no progress bar); the plain loop calls the
model, backpropagates and steps the optimizer. Runs alternate in one process and the script
prints the ratio of median steps per second (Lightning / plain), and of the best run of each
(less sensitive to other processes on a shared machine). Target: overhead <= 10% (ratio >= 0.90).
Lightning's cost is roughly fixed per step (hooks, logging), so the ratio improves with step time.

Run:  .venv/bin/python benchmarks/training.py [--steps 20] [--repeats 5] [--batch 8] [--channels 16] [--samples 512]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch

from neurocrane import Pipeline
from neurocrane.models import SEEGTransformer, SEEGTransformerConfig
from neurocrane.preprocessing import CommonAverageReference, ZScore
from neurocrane.training import LightningModule

RATE = 512.0


def make_model(seed: int = 0) -> SEEGTransformer:
    torch.manual_seed(seed)
    model = SEEGTransformer(
        SEEGTransformerConfig(token_type="patch", patch_size=32, hidden_size=64, num_layers=2, num_heads=4,
                              intermediate_size=128, dropout=0.1, objective="masked")
    )
    model.preprocess_pipeline = Pipeline([CommonAverageReference(), ZScore()])
    return model.train()


def make_batches(n: int, batch: int, channels: int, n_times: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    names = tuple(f"LA{i + 1}" for i in range(channels))
    return [
        {
            "neural_data": torch.randn(batch, channels, n_times, generator=g),
            "channel_mask": torch.ones(batch, channels, dtype=torch.bool),
            "channel_names": names,
            "sampling_rate": RATE,
            "labels": torch.full((batch,), -1),
        }
        for _ in range(n)
    ]


def plain_loop(batches: list[dict]) -> float:
    """Steps per second of a hand-written loop."""
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        loss = model(**inputs, return_loss=True)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(batches) / (time.perf_counter() - start)


class _Clock(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def lightning_path(batches: list[dict]) -> float:
    """Steps per second of Trainer.fit on the LightningModule (setup excluded)."""
    module = LightningModule(make_model(), {"_target_": "torch.optim.AdamW", "lr": 1e-3})
    clock = _Clock()
    loader = torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=lambda b: b)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[clock],
    )
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == len(batches)
    return len(batches) / clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning_fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    batches = make_batches(args.steps, args.batch, args.channels, args.samples)
    plain_loop(batches[:5]), lightning_path(batches[:5])  # warm-up
    plain, light = [], []
    for _ in range(args.repeats):  # interleaved so both see the same machine load
        plain.append(plain_loop(batches))
        light.append(lightning_path(batches))
    p, lt = statistics.median(plain), statistics.median(light)
    print(f"plain PyTorch loop : {p:7.2f} steps/s  (runs: {', '.join(f'{v:.2f}' for v in plain)})")
    print(f"LightningModule    : {lt:7.2f} steps/s  (runs: {', '.join(f'{v:.2f}' for v in light)})")
    print(f"ratio Lightning/plain = {lt / p:.3f} median, {max(light) / max(plain):.3f} best-of-runs "
          f"(overhead {100 * (1 - lt / p):.1f}%; target <= 10%)")


if __name__ == "__main__":
    main()
