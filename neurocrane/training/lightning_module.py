"""``LightningModule``: the PyTorch Lightning wrapper around any neurocrane ``BaseModel`` (SPEC §3.6).

Each step calls the model with the batch dict (``model(**batch)``, so the model's stored
pipeline runs first), logs ``train_loss`` / ``val_loss`` / ``test_loss`` on the progress bar and
every other scalar the model returns (``train_<name>`` ...). Batches without labels (every
label ``-1``, as in self-supervised pretraining) reach the model without ``labels``.

Example:
    >>> module = LightningModule(model, {"_target_": "torch.optim.AdamW", "lr": 3e-4},
    ...                          {"_target_": "neurocrane.training.optim.warmup_cosine_schedule",
    ...                           "warmup_ratio": 0.05})
    >>> pl.Trainer(max_epochs=1).fit(module, datamodule)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from neurocrane.errors import NeuroCraneError
from neurocrane.training.optim import _plain, build_optimizer, build_scheduler

__all__ = ["LightningModule", "MissingLossError"]

# Outputs that are tensors of per-sample values, never logged.
_NOT_METRICS = frozenset({"loss", "logits", "hidden_states", "features", "predictions", "reconstruction"})


class MissingLossError(NeuroCraneError, ValueError):
    """The model returned no ``loss`` for a training or validation batch."""


def _batch_size(batch: Mapping[str, Any]) -> int | None:
    x = batch.get("neural_data")
    if isinstance(x, torch.Tensor) and x.ndim >= 2:
        return int(x.shape[0])
    return None


def _scalars(outputs: Mapping[str, Any]) -> dict[str, torch.Tensor | float]:
    """Scalar entries of a model's output dict (and of its ``metrics`` dict), by name."""
    found: dict[str, torch.Tensor | float] = {}
    nested = outputs.get("metrics")
    items = list(outputs.items()) + (list(nested.items()) if isinstance(nested, Mapping) else [])
    for key, value in items:
        if key in _NOT_METRICS or key == "metrics":
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1 and (value.is_floating_point() or value.dtype == torch.bool):
            found[str(key)] = value.detach().float().reshape(())
        elif isinstance(value, float | int) and not isinstance(value, bool):
            found[str(key)] = float(value)
    return found


class LightningModule(pl.LightningModule):
    """Train, validate and test any :class:`~neurocrane.models.BaseModel` with Lightning.

    Args:
        model: The model; it is called as ``model(**batch)`` and must return a dict with
            ``loss`` (plus, optionally, ``logits`` and scalar metrics).
        optimizer_config: ``{"_target_": "torch.optim.AdamW", "lr": ...}`` (Hydra style,
            resolved as a partial and called with the parameters), a callable
            ``f(params) -> Optimizer``, or ``None`` for AdamW(lr=1e-3). Never modified.
        scheduler_config: ``None``, a dict with ``_target_`` (and optionally Lightning's
            ``interval``/``frequency``/``monitor``), or a callable ``f(optimizer)``. A scheduler
            with a ``total_steps`` argument left out gets the trainer's estimated step count
            (see :func:`neurocrane.training.optim.warmup_cosine_schedule`). Never modified.
        log_accuracy: Log ``val_acc``/``test_acc`` when the model returns class ``logits`` and
            the batch is labelled.

    Example:
        >>> module = LightningModule(model, {"_target_": "torch.optim.SGD", "lr": 0.1})
        >>> module.configure_optimizers()  # may be called any number of times
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer_config: Mapping[str, Any] | Callable[..., Any] | None = None,
        scheduler_config: Mapping[str, Any] | Callable[..., Any] | None = None,
        *,
        log_accuracy: bool = True,
    ):
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"LightningModule wraps a neurocrane BaseModel (a torch.nn.Module); got {type(model).__name__}.")
        self.model = model
        # Kept as given (a copy for dicts) and only read, so configure_optimizers can run again.
        self.optimizer_config = _plain(optimizer_config) if isinstance(optimizer_config, Mapping) else optimizer_config
        self.scheduler_config = _plain(scheduler_config) if isinstance(scheduler_config, Mapping) else scheduler_config
        self.log_accuracy = log_accuracy
        self.save_hyperparameters(
            {
                "optimizer_config": self._describe(self.optimizer_config),
                "scheduler_config": self._describe(self.scheduler_config),
                "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            }
        )

    @staticmethod
    def _describe(config: Any) -> Any:
        return config if config is None or isinstance(config, Mapping) else repr(config)

    # -- steps --------------------------------------------------------------------------------
    def forward(self, **batch: Any) -> Any:
        return self.model(**batch)

    def _model_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments the model is called with for one batch dict."""
        inputs = dict(batch)
        labels = inputs.get("labels")
        if isinstance(labels, torch.Tensor) and labels.numel() and not labels.is_floating_point() and bool((labels < 0).all()):
            inputs.pop("labels")  # unlabelled windows: self-supervised objective
        positions = inputs.get("channel_positions")
        if isinstance(positions, torch.Tensor) and positions.ndim == 3:
            # Collated batches carry per-sample positions (B, C, 3); a NeuralBatch shares one
            # (C, 3) set, kept when every sample agrees (the data layer's own rule).
            from neurocrane.data.collate import to_neural_batch

            inputs["channel_positions"] = to_neural_batch(inputs).channel_positions
        inputs.setdefault("return_loss", True)  # validation needs the loss too (e.g. masked objectives)
        return inputs

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> torch.Tensor:
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"{stage} batches must be dicts with 'neural_data' (as iEEGDataModule yields); got {type(batch).__name__}."
            )
        inputs = self._model_inputs(batch)
        outputs = self.model(**inputs)
        if not isinstance(outputs, Mapping):
            raise TypeError(f"{type(self.model).__name__} returned {type(outputs).__name__}; a dict with 'loss' is expected.")
        loss = outputs.get("loss")
        if loss is None:
            hint = (
                " The batch has no labels: fine-tuning needs labelled windows (data.windows=events)."
                if "labels" not in inputs
                else ""
            )
            raise MissingLossError(
                f"{type(self.model).__name__} returned no 'loss' for a {stage} batch (keys: {sorted(outputs)}).{hint}"
            )
        size = _batch_size(batch)
        on_step = stage == "train"
        sync = stage != "train"
        self.log(f"{stage}_loss", loss.detach(), prog_bar=True, on_step=on_step, on_epoch=not on_step, batch_size=size, sync_dist=sync)
        for name, value in _scalars(outputs).items():
            self.log(f"{stage}_{name}", value, on_step=on_step, on_epoch=not on_step, batch_size=size, sync_dist=sync)
        if stage != "train" and self.log_accuracy:
            acc = self._accuracy(outputs.get("logits"), inputs.get("labels"))
            if acc is not None:
                self.log(f"{stage}_acc", acc, prog_bar=True, on_epoch=True, batch_size=size, sync_dist=sync)
        return loss

    @staticmethod
    def _accuracy(logits: Any, labels: Any) -> torch.Tensor | None:
        if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
            return None
        if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0] or logits.shape[1] < 2:
            return None
        valid = labels >= 0
        if not bool(valid.any()):
            return None
        return (logits.argmax(dim=1)[valid] == labels[valid]).float().mean()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    # -- optimization -------------------------------------------------------------------------
    def _total_steps(self) -> int | None:
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return None
        try:
            steps = trainer.estimated_stepping_batches
        except Exception:  # no dataloader yet, or an infinite run
            return None
        return int(steps) if steps is not None and np.isfinite(steps) else None

    def configure_optimizers(self) -> Any:
        """Build the optimizer (and scheduler) from the stored configs; safe to call repeatedly."""
        optimizer = build_optimizer(self.parameters(), self.optimizer_config)
        scheduler = build_scheduler(optimizer, self.scheduler_config, total_steps=self._total_steps())
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # -- exact resume ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Random state travels with the checkpoint so a resumed run draws the same masks/dropout
        # as an uninterrupted one would have.
        # Stored as tensors and tuples only, so torch.load(weights_only=True) can read it.
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["neurocrane_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": (str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("neurocrane_rng")
        if state:
            torch.set_rng_state(state["torch"])
            kind, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            random.setstate(state["python"])
