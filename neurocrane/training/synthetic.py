"""A DataModule over the synthetic SEEG corpus, generated on first use (for the ready experiments).

The corpus is written under ``root`` by :func:`neurocrane.data.synthetic.make_synthetic_corpus`
(deterministic; sessions already there with the same parameters are reused), together with a
subject/trials file selecting every session, and wrapped in an
:class:`~neurocrane.data.datamodule.iEEGDataModule`.

Example:
    >>> dm = synthetic_datamodule("data/synthetic", corpus={"n_subjects": 2, "duration_s": 20.0},
    ...                           context_length=1.0, batch_size=8, num_workers=0, val_split=0.25)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurocrane.pipeline.io import atomic_write_text

__all__ = ["synthetic_datamodule"]

_TRIALS_NAME = "trials.yaml"


def _rank() -> int:
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def synthetic_datamodule(
    root: str | Path,
    corpus: Mapping[str, Any] | None = None,
    context_length: float = 2.0,
    *,
    pipeline: Any = None,
    wait_s: float = 600.0,
    **datamodule_kwargs: Any,
) -> Any:
    """Generate (or reuse) a synthetic corpus under ``root`` and return a DataModule over it.

    Args:
        root: Parent folder; the corpus goes to ``root/<hash of the corpus parameters>`` so
            corpora of different sizes never clash.
        corpus: Arguments of :func:`~neurocrane.data.synthetic.make_synthetic_corpus`
            (``n_subjects``, ``sessions_per_subject``, ``duration_s``, ``sampling_rate``, ``seed``, ...).
        context_length: Window length in seconds.
        pipeline: A model pipeline whose recording part the DataModule applies once per recording.
        wait_s: Under multi-process launchers (torchrun, SLURM) only rank 0 generates; other
            ranks wait up to this long for it.
        **datamodule_kwargs: Other :class:`~neurocrane.data.datamodule.iEEGDataModule` arguments.

    Returns:
        The ``iEEGDataModule``.
    """
    from neurocrane.data.datamodule import iEEGDataModule
    from neurocrane.data.synthetic import make_synthetic_corpus

    params = dict(corpus or {})
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]
    folder = Path(root) / f"corpus-{key}"
    trials = folder / _TRIALS_NAME
    if _rank() == 0:
        # Cheap when the sessions exist: they are reused when their parameters match.
        index = make_synthetic_corpus(folder / "sessions", **params)
        subjects = sorted({subject for subject, _, _ in index.sessions})
        text = "".join(f"{s}: '*'\n" for s in subjects)
        if not trials.is_file() or trials.read_text(encoding="utf-8") != text:
            atomic_write_text(trials, text)
    else:
        deadline = time.monotonic() + wait_s
        while not trials.is_file():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"rank {_rank()} waited {wait_s:g} s for rank 0 to generate the synthetic corpus at {folder}; "
                    "generate it beforehand (one single-process run) or raise data.wait_s."
                )
            time.sleep(1.0)
    return iEEGDataModule(
        str(trials),
        context_length,
        data_root_dir=str(folder / "sessions"),
        pipeline=pipeline,
        **datamodule_kwargs,
    )
