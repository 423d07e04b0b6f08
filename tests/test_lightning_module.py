"""LightningModule and optim: optimizer/scheduler from configs (no mutation), warm-up + cosine,
steps and logging, labels handling, exact-resume RNG state, errors."""

import copy
import functools
import math
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from neurocrane.models import SEEGTransformer, SEEGTransformerConfig
from neurocrane.training import LightningModule, MissingLossError, OptimConfigError, build_scheduler
from neurocrane.training.optim import WarmupCosine, build_optimizer, warmup_cosine_schedule

RATE = 256.0
NAMES = tuple(f"LA{i}" for i in range(1, 5))


def tiny_model(objective: str = "masked") -> SEEGTransformer:
    torch.manual_seed(0)
    config = SEEGTransformerConfig(
        token_type="patch", patch_size=16, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
        dropout=0.0, objective=objective, num_labels=2,
    )
    return SEEGTransformer(config)


def batch_dict(n: int = 4, labels: list[int] | None = None, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "neural_data": torch.randn(n, len(NAMES), 64, generator=g),
        "channel_mask": torch.ones(n, len(NAMES), dtype=torch.bool),
        "channel_names": NAMES,
        "channel_positions": torch.arange(len(NAMES) * 3, dtype=torch.float32).reshape(1, len(NAMES), 3).repeat(n, 1, 1),
        "sampling_rate": RATE,
        "labels": torch.tensor(labels if labels is not None else [-1] * n),
        "subject_id": ["sub-01"] * n,
        "session_id": ["ses-01"] * n,
    }


OPT = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 0.01, "betas": [0.9, 0.99]}
SCHED = {
    "_target_": "neurocrane.training.optim.warmup_cosine_schedule",
    "warmup_steps": 2,
    "total_steps": 10,
    "interval": "step",
}


def test_configure_optimizers_twice_does_not_mutate_configs():
    opt_cfg, sched_cfg = copy.deepcopy(OPT), copy.deepcopy(SCHED)
    module = LightningModule(tiny_model(), opt_cfg, sched_cfg)
    first = module.configure_optimizers()
    second = module.configure_optimizers()
    assert opt_cfg == OPT and sched_cfg == SCHED  # the caller's dicts are untouched
    for out in (first, second):
        assert isinstance(out["optimizer"], torch.optim.AdamW)
        assert out["optimizer"].defaults["lr"] == 1e-3 and out["optimizer"].defaults["betas"] == (0.9, 0.99)
        assert out["lr_scheduler"]["interval"] == "step"
        assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.LambdaLR)
    assert first["optimizer"] is not second["optimizer"]
    n_params = sum(p.numel() for p in module.parameters())
    assert sum(p.numel() for g in second["optimizer"].param_groups for p in g["params"]) == n_params


def test_omegaconf_config_and_callables():
    from omegaconf import OmegaConf

    module = LightningModule(tiny_model(), OmegaConf.create(OPT))
    assert isinstance(module.configure_optimizers(), torch.optim.AdamW)
    module = LightningModule(tiny_model(), functools.partial(torch.optim.SGD, lr=0.5), lambda opt: torch.optim.lr_scheduler.StepLR(opt, 3))
    out = module.configure_optimizers()
    assert isinstance(out["optimizer"], torch.optim.SGD) and out["optimizer"].defaults["lr"] == 0.5
    assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert isinstance(LightningModule(tiny_model()).configure_optimizers(), torch.optim.AdamW)  # default


def test_warmup_cosine_curve():
    f = WarmupCosine(warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    values = [f(s) for s in range(4, 15)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_cosine_schedule(opt, total_steps=10, warmup_ratio=0.2)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)  # step 0 of a 2-step warm-up
    state = sched.state_dict()
    assert state["lr_lambdas"][0] == {"warmup_steps": 2, "total_steps": 10, "min_lr_ratio": 0.0}


def test_total_steps_filled_from_trainer_or_refused():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = {"_target_": "neurocrane.training.optim.warmup_cosine_schedule", "warmup_steps": 1, "total_steps": None}
    out = build_scheduler(opt, cfg, total_steps=40)
    assert out["scheduler"].lr_lambdas[0].total_steps == 40 and out["interval"] == "step"
    with pytest.raises(OptimConfigError, match="total_steps"):
        build_scheduler(opt, cfg, total_steps=None)


def test_bad_optimizer_configs():
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(OptimConfigError, match="_target_"):
        build_optimizer(params, {"lr": 0.1})
    with pytest.raises(OptimConfigError, match="torch.optim.NoSuchOpt"):
        build_optimizer(params, {"_target_": "torch.optim.NoSuchOpt", "lr": 0.1})
    with pytest.raises(OptimConfigError, match="argument"):
        build_optimizer(params, {"_target_": "torch.optim.SGD", "lr": 0.1, "momentm": 0.9})
    with pytest.raises(OptimConfigError, match="not a torch.optim.Optimizer"):
        build_optimizer(params, lambda p: "nope")


class _Recorder(pl.Callback):
    def __init__(self):
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_fit_logs_losses_and_schedules_per_step(tmp_path):
    def loader(batches):  # each item is already a batch dict
        return torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=lambda b: b)

    train = loader([batch_dict(seed=i) for i in range(4)])
    val = loader([batch_dict(seed=10)])
    sched = {"_target_": "neurocrane.training.optim.warmup_cosine_schedule", "warmup_steps": 2}
    module = LightningModule(tiny_model(), {"_target_": "torch.optim.SGD", "lr": 0.1}, sched)
    rec = _Recorder()
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[rec], num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    assert trainer.global_step == 8
    # total_steps came from the trainer (8): warm-up 0.05, 0.1, then a cosine down to ~0
    assert rec.lrs[:2] == pytest.approx([0.05, 0.1])
    assert rec.lrs[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 6)))
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train_loss"])) and math.isfinite(float(metrics["val_loss"]))


def test_unlabelled_batches_reach_the_model_without_labels_and_validation_has_a_loss():
    module = LightningModule(tiny_model())
    inputs = module._model_inputs(batch_dict())
    assert "labels" not in inputs and inputs["return_loss"] is True
    assert inputs["channel_positions"].shape == (len(NAMES), 3)  # per-sample positions shared
    labelled = module._model_inputs(batch_dict(labels=[0, 1, 0, 1]))
    assert labelled["labels"].tolist() == [0, 1, 0, 1]
    module.model.eval()
    with torch.no_grad():
        loss = module._shared_step(batch_dict(), "val")
    assert loss.ndim == 0 and math.isfinite(float(loss))


def test_classification_logs_accuracy():
    module = LightningModule(tiny_model("classification"))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    assert float(module._accuracy(logits, torch.tensor([0, 1, 1, -1]))) == pytest.approx(2 / 3)
    assert module._accuracy(logits, torch.tensor([-1, -1, -1, -1])) is None
    assert module._accuracy(torch.zeros(4, 3, 2), torch.tensor([0, 1, 0, 1])) is None


def test_missing_loss_is_a_clear_error():
    module = LightningModule(tiny_model("classification"))
    with pytest.raises(Exception, match="labels"):
        module.training_step(batch_dict(), 0)  # a classifier without labels cannot make a loss

    class NoLoss(torch.nn.Module):
        def forward(self, **batch):
            return {"logits": torch.zeros(2, 2)}

    with pytest.raises(MissingLossError, match="no 'loss'.*windows=events"):
        LightningModule(NoLoss()).training_step(batch_dict(), 0)
    with pytest.raises(TypeError, match="BaseModel"):
        LightningModule("not a model")


def test_checkpoint_carries_rng_state_loadable_with_weights_only(tmp_path):
    module = LightningModule(tiny_model())
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.save(checkpoint, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)  # what Lightning does by default
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    module.on_load_checkpoint(loaded)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
