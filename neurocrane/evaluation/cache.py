"""A result cache keyed by what determines a result, so reruns skip finished work.

The key of one (fold of one) evaluation is a hash of: the model's weights hash, its pipeline
fingerprint, the benchmark (name and data fingerprint), the split label, the protocol and its
configuration (probe grid, fine-tune config). Like MOABB's cache, a changed pipeline or
changed weights give another key, so a hit is never stale. Entries are small JSON files
(written atomically); nothing in them is executed when read.

Example:
    >>> cache = ResultCache("~/.cache/neurocrane/results")
    >>> key = cache.key(weights="ab12", pipeline="cd34", benchmark="synthetic:ef56",
    ...                 split="within_session", protocol="linear_probe", config={})
    >>> cache.get(key) is None
    True
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from neurocrane.evaluation.results import ScoreRecord
from neurocrane.pipeline.io import atomic_write_text

__all__ = ["ResultCache"]

_FORMAT = "neurocrane.result_cache"


class ResultCache:
    """Folder of cached fold results.

    Args:
        root: Folder (created when needed); ``~`` is expanded.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    @staticmethod
    def key(
        *, weights: str, pipeline: str, benchmark: str, split: str, protocol: str, config: Any = None
    ) -> str:
        """The cache key (hex) of one fold's evaluation."""
        payload = {
            "weights": weights, "pipeline": pipeline, "benchmark": benchmark, "split": split,
            "protocol": protocol, "config": config,
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[ScoreRecord] | None:
        """The cached records for ``key``, or ``None`` (also for an unreadable entry)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != _FORMAT or data.get("key") != key:
                return None
            return [ScoreRecord.from_dict(r) for r in data["records"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, records: list[ScoreRecord]) -> Path:
        """Store ``records`` under ``key`` (atomic write)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": _FORMAT, "key": key, "records": [r.to_dict() for r in records]}
        return atomic_write_text(path, json.dumps(data, allow_nan=False) + "\n")

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.is_dir() else 0

    def __repr__(self) -> str:
        return f"ResultCache({str(self.root)!r}, {len(self)} entries)"
