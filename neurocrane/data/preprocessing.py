"""Data-quality clean-up every model needs (SPEC §3.2), and nothing model-specific.

:class:`BasicPreprocessor` replaces NaN/+Inf/-Inf with 0, casts to float32 and zeroes masked
channels. It never hides what it did: each batch dict gets ``n_replaced`` (non-finite values
replaced in that batch), the preprocessor keeps running totals, and the first batch with
replacements (and every ``log_every``-th after it) is logged as a warning on the
``neurocrane.data`` logger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import MutableMapping
from typing import Any

import torch

from neurocrane.errors import InputDTypeError, InputError

__all__ = ["BasicPreprocessor"]

logger = logging.getLogger("neurocrane.data")


class BasicPreprocessor:
    """Make a batch dict clean: finite values, float32, masked channels set to zero.

    Args:
        allow_integer: Integer signals (e.g. raw int16 ADC counts) are refused by default, because
            their physical scale is unknown here; convert them with the recording's scale first.
            With ``allow_integer=True`` they are cast to float32 as they are (counts stay counts).
        log_every: Log a warning for the first batch with non-finite values and then for every
            ``log_every``-th such batch (0: only the first).
        inplace: Clean float32 ``neural_data`` in place instead of on a copy (saves a pass over
            the batch; use it only on tensors nobody else holds, e.g. fresh from collate).

    Attributes:
        n_replaced: Non-finite values replaced so far, all batches together (in this process).
        n_batches_with_nonfinite: Batches in which at least one value was replaced.

    Example:
        >>> pre = BasicPreprocessor()
        >>> batch = pre({"neural_data": torch.tensor([[[1.0, float("nan")]]])})
        >>> batch["neural_data"].tolist(), int(batch["n_replaced"])
        ([[[1.0, 0.0]]], 1)
    """

    def __init__(self, allow_integer: bool = False, log_every: int = 100, inplace: bool = False):
        if int(log_every) != log_every or log_every < 0:
            raise InputError(f"BasicPreprocessor: log_every must be a non-negative int; got {log_every!r}.")
        self.allow_integer = bool(allow_integer)
        self.inplace = bool(inplace)
        self.log_every = int(log_every)
        self.n_replaced = 0
        self.n_batches_with_nonfinite = 0
        self._lock = threading.Lock()  # loader threads may share one preprocessor

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __call__(self, batch: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Clean ``batch["neural_data"]`` in the dict (returned, also modified in place).

        Args:
            batch: A dict with ``neural_data`` (any rank, batch first) and optionally
                ``channel_mask`` (B, C) bool.

        Returns:
            The same dict, with ``neural_data`` float32 and finite, and ``n_replaced`` (int) set.

        Raises:
            InputDTypeError: integer data without ``allow_integer=True``, or bool/complex data.
            InputError: a ``channel_mask`` whose shape does not match (B, C).
        """
        if "neural_data" not in batch:
            raise InputError(f"BasicPreprocessor: the batch has no 'neural_data'; keys are {sorted(batch)}.")
        x = torch.as_tensor(batch["neural_data"])
        if x.dtype == torch.bool or x.is_complex():
            raise InputDTypeError(f"BasicPreprocessor: neural_data must be real numbers; got {x.dtype}.")
        if not x.is_floating_point():
            if not self.allow_integer:
                raise InputDTypeError(
                    f"BasicPreprocessor: neural_data is {x.dtype}; integer samples (raw ADC counts) have no "
                    "physical scale here. Convert them to float volts/microvolts with the recording's scale "
                    "(Recording.read does), or pass BasicPreprocessor(allow_integer=True) to cast as they are."
                )
            x = x.to(torch.float32)
            n_bad = 0
        else:
            n_bad = 0
            # The sum of finite values is finite (barring overflow, which only costs the exact
            # count below): one fast reduction instead of a full isfinite mask per batch.
            if x.numel() and not bool(torch.isfinite(x.sum())):
                finite = torch.isfinite(x)
                n_bad = int(finite.numel() - finite.sum())
                if n_bad:
                    if self.inplace and x.dtype == torch.float32:
                        x.masked_fill_(~finite, 0.0)
                    else:
                        x = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
            x = x.to(torch.float32)
        mask = batch.get("channel_mask")
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device).to(torch.bool)
            if x.ndim < 2 or mask.shape != x.shape[:2]:
                raise InputError(
                    f"BasicPreprocessor: channel_mask must have shape (batch, channels) = {tuple(x.shape[:2])}; "
                    f"got {tuple(mask.shape)}."
                )
            if not bool(mask.all()):
                # Index the few masked (batch, channel) rows rather than broadcast a mask over
                # every sample: 20x faster, and cheap on time-major (transposed) batches too.
                if not self.inplace and x is batch["neural_data"]:
                    x = x.clone()
                x[(~mask).nonzero(as_tuple=True)] = 0.0
        batch["neural_data"] = x
        return self.record(batch, n_bad)

    def record(self, batch: MutableMapping[str, Any], n_replaced: int) -> MutableMapping[str, Any]:
        """Account for ``n_replaced`` values already replaced in ``batch``: set ``n_replaced`` on it,
        add to the totals, log as described above.

        :class:`~neurocrane.data.WindowCollator` cleans windows while it reads them (the same
        clean-up, done in cache) and calls this instead of :meth:`__call__`.

        Args:
            batch: The batch dict (modified in place and returned).
            n_replaced: Non-finite values replaced in it.

        Returns:
            ``batch`` with ``n_replaced`` set.
        """
        batch["n_replaced"] = int(n_replaced)  # a plain int: moving the batch to a GPU never syncs on it
        if n_replaced:
            with self._lock:
                self.n_replaced += int(n_replaced)
                self.n_batches_with_nonfinite += 1
                k, total = self.n_batches_with_nonfinite, self.n_replaced
            if k == 1 or (self.log_every and k % self.log_every == 0):
                logger.warning(
                    "BasicPreprocessor replaced %d non-finite value(s) (NaN/Inf) with 0 in this batch "
                    "(%d value(s) in %d batch(es) so far).", n_replaced, total, k,
                )
        return batch

    def __repr__(self) -> str:
        return f"BasicPreprocessor(allow_integer={self.allow_integer}, replaced={self.n_replaced})"
