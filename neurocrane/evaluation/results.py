"""The results of an evaluation: per-subject scores, their aggregates, and ways to show them.

An :class:`EvaluationResults` is a flat list of :class:`ScoreRecord` — one per (model,
benchmark, protocol, split fold, subject), plus one ``subject="all"`` record per fold scored on
every test window together. From them it derives, per (model, benchmark, protocol, metric):
the pooled score (mean over folds) and a summary over subjects (each subject's score averaged
over folds first) as mean ± sd with a bootstrap 95% CI.

It prints as a table, saves JSON (lossless, :meth:`EvaluationResults.load` reads it back) and
Markdown, and draws a PNG of per-subject scores per protocol with matplotlib when installed.

Example:
    >>> results = evaluate(model, [benchmark], protocols=["linear_probe"])
    >>> print(results)
    >>> results.save_json("results.json"); results.save_markdown("results.md"); results.plot("results.png")
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurocrane.errors import InputError
from neurocrane.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, Summary, summarize
from neurocrane.pipeline.io import atomic_write_text

__all__ = ["ALL_SUBJECTS", "EvaluationResults", "ScoreRecord", "SummaryRow"]

#: Subject label of the record scored on all test windows of a fold together.
ALL_SUBJECTS = "all"
_FORMAT = "neurocrane.evaluation_results"
_VERSION = 1


@dataclass(frozen=True)
class ScoreRecord:
    """Scores of one model on one benchmark, protocol, split fold and subject.

    Attributes:
        model: Model label (e.g. the path or repo id, or ``baseline:<pipeline>``).
        benchmark: Benchmark name.
        protocol: ``"zero_shot"``, ``"linear_probe"`` or ``"finetune"``.
        split: Split label, e.g. ``within_session/fold0of5``.
        subject: Subject id, or ``"all"`` for all test windows together.
        metrics: Metric name → value (NaN where undefined, e.g. AUROC on one class).
        n_test: Number of test windows scored.
        info: Extra facts (chosen probe regularization, whether the result came from the cache).
    """

    model: str
    benchmark: str
    protocol: str
    split: str
    subject: str
    metrics: Mapping[str, float]
    n_test: int
    info: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = {k: _json_float(v) for k, v in self.metrics.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreRecord:
        metrics = {k: float("nan") if v is None else float(v) for k, v in data["metrics"].items()}
        return cls(
            model=str(data["model"]), benchmark=str(data["benchmark"]), protocol=str(data["protocol"]),
            split=str(data["split"]), subject=str(data["subject"]), metrics=metrics,
            n_test=int(data["n_test"]), info=dict(data.get("info") or {}),
        )


def _json_float(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None  # JSON has no NaN


@dataclass(frozen=True)
class SummaryRow:
    """One line of the results table: a metric of a (model, benchmark, protocol)."""

    model: str
    benchmark: str
    protocol: str
    metric: str
    pooled: float
    subjects: Summary
    n_folds: int


class EvaluationResults:
    """A collection of :class:`ScoreRecord` with table, JSON, Markdown and figure views.

    Args:
        records: The records.
        skipped: ``(model, benchmark, protocol, reason)`` for combinations not run (e.g. a
            protocol the benchmark does not support).

    Example:
        >>> res.metrics("model", "synthetic-events", "linear_probe")["auc"]
        0.93
    """

    def __init__(self, records: Iterable[ScoreRecord] = (), skipped: Iterable[Sequence[str]] = ()):
        self.records: list[ScoreRecord] = list(records)
        self.skipped: list[tuple[str, ...]] = [tuple(s) for s in skipped]

    def extend(self, other: EvaluationResults | Iterable[ScoreRecord]) -> None:
        """Add records (and skipped entries) of another results object."""
        if isinstance(other, EvaluationResults):
            self.records.extend(other.records)
            self.skipped.extend(other.skipped)
        else:
            self.records.extend(other)

    def __len__(self) -> int:
        return len(self.records)

    # -- queries -----------------------------------------------------------------------------
    def keys(self) -> list[tuple[str, str, str]]:
        """Distinct ``(model, benchmark, protocol)`` in order of first appearance."""
        return list(dict.fromkeys((r.model, r.benchmark, r.protocol) for r in self.records))

    def _select(self, model: str, benchmark: str, protocol: str) -> list[ScoreRecord]:
        found = [r for r in self.records if (r.model, r.benchmark, r.protocol) == (model, benchmark, protocol)]
        if not found:
            raise InputError(
                f"no results for model={model!r}, benchmark={benchmark!r}, protocol={protocol!r}; "
                f"available: {self.keys()}."
            )
        return found

    def metrics(self, model: str, benchmark: str, protocol: str) -> dict[str, float]:
        """Pooled scores (all test windows of a fold together), averaged over folds."""
        pooled = [r for r in self._select(model, benchmark, protocol) if r.subject == ALL_SUBJECTS]
        names = list(dict.fromkeys(k for r in pooled for k in r.metrics))
        return {k: _nanmean([r.metrics.get(k, math.nan) for r in pooled]) for k in names}

    def subject_scores(self, model: str, benchmark: str, protocol: str, metric: str) -> dict[str, float]:
        """Each subject's score, averaged over the folds in which it was tested."""
        per: dict[str, list[float]] = defaultdict(list)
        for r in self._select(model, benchmark, protocol):
            if r.subject != ALL_SUBJECTS and metric in r.metrics:
                per[r.subject].append(r.metrics[metric])
        return {s: _nanmean(v) for s, v in sorted(per.items())}

    def summary(self, metrics: Sequence[str] | None = None) -> list[SummaryRow]:
        """One :class:`SummaryRow` per (model, benchmark, protocol, metric)."""
        rows = []
        for key in self.keys():
            recs = self._select(*key)
            present = list(dict.fromkeys(k for r in recs for k in r.metrics))
            order = [m for m in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS) if m in present]
            order += [m for m in present if m not in order]
            pooled = self.metrics(*key)
            n_folds = len({r.split for r in recs})
            for m in order if metrics is None else [m for m in metrics if m in present]:
                rows.append(SummaryRow(*key, m, pooled.get(m, math.nan), summarize(self.subject_scores(*key, m)), n_folds))
        return rows

    # -- views -------------------------------------------------------------------------------
    def _rows(self, metrics: Sequence[str] | None) -> tuple[list[str], list[list[str]]]:
        header = ["model", "benchmark", "protocol", "metric", "pooled", "subjects mean ± sd", "95% CI", "n subj", "folds"]
        body = []
        for row in self.summary(metrics):
            s = row.subjects
            body.append([
                row.model, row.benchmark, row.protocol, row.metric, _fmt(row.pooled),
                "n/a" if s.n == 0 else f"{s.mean:.3f} ± {s.sd:.3f}",
                "n/a" if s.n == 0 else f"[{s.ci_low:.3f}, {s.ci_high:.3f}]",
                str(s.n), str(row.n_folds),
            ])
        return header, body

    def table(self, metrics: Sequence[str] | None = None) -> str:
        """A plain-text table (what ``print(results)`` shows)."""
        header, body = self._rows(metrics)
        if not body:
            return "EvaluationResults: no results" + self._skipped_text()
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
        out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in body]
        return "\n".join(out) + self._skipped_text()

    def _skipped_text(self) -> str:
        if not self.skipped:
            return ""
        return "\nnot run:\n" + "\n".join(f"  {m} / {b} / {p}: {why}" for m, b, p, why in self.skipped)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"EvaluationResults({len(self.records)} records, {len(self.keys())} model/benchmark/protocol combinations)"

    def to_markdown(self, metrics: Sequence[str] | None = None) -> str:
        """A Markdown table of the summary, followed by per-subject scores of the first metric."""
        header, body = self._rows(metrics)
        esc = lambda c: c.replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in body]
        if self.skipped:
            lines += ["", "Not run:", ""] + [f"- {m} / {b} / {p}: {why}" for m, b, p, why in self.skipped]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: every record, the summary rows, and what was skipped."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "records": [r.to_dict() for r in self.records],
            "summary": [
                {"model": r.model, "benchmark": r.benchmark, "protocol": r.protocol, "metric": r.metric,
                 "pooled": _json_float(r.pooled), "n_folds": r.n_folds,
                 "subjects": {k: _json_float(v) if isinstance(v, float) else v for k, v in r.subjects.to_dict().items()}}
                for r in self.summary()
            ],
            "skipped": [list(s) for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResults:
        """Inverse of :meth:`to_dict` (the summary is recomputed from the records)."""
        if data.get("format") != _FORMAT:
            raise InputError(f"not a neurocrane results file (format {data.get('format')!r}, expected {_FORMAT!r}).")
        if int(data.get("version", 0)) > _VERSION:
            raise InputError(f"results file version {data.get('version')} is newer than this neurocrane reads ({_VERSION}).")
        return cls([ScoreRecord.from_dict(r) for r in data["records"]], data.get("skipped", ()))

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> EvaluationResults:
        """Read a file written by :meth:`save_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def save_markdown(self, path: str | Path, metrics: Sequence[str] | None = None) -> Path:
        """Write :meth:`to_markdown` (atomically)."""
        return atomic_write_text(path, self.to_markdown(metrics))

    def plot(self, path: str | Path | None = None, metric: str | None = None) -> Any:
        """Per-subject scores per protocol: one panel per benchmark, one group of points per
        (model, protocol), the subject mean as a bar and the bootstrap 95% CI as an error bar.

        Args:
            path: PNG file to write (``None``: only return the figure).
            metric: Metric to show (default: ``auc`` when present, else the first one).

        Returns:
            The matplotlib figure.

        Raises:
            ImportError: matplotlib is not installed (``pip install neurocrane[plot]``).
        """
        try:
            import matplotlib

            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("plotting results needs matplotlib: pip install 'neurocrane[plot]'.") from None
        if not self.records:
            raise InputError("no results to plot.")
        if metric is None:
            names = list(dict.fromkeys(k for r in self.records for k in r.metrics))
            metric = "auc" if "auc" in names else ("r2" if "r2" in names else names[0])
        benchmarks = list(dict.fromkeys(b for _, b, _ in self.keys()))
        fig, axes = plt.subplots(1, len(benchmarks), figsize=(max(4.0, 3.2 * len(self.keys()) / len(benchmarks)) * len(benchmarks), 3.8),
                                 squeeze=False)
        for ax, bench in zip(axes[0], benchmarks, strict=True):
            keys = [k for k in self.keys() if k[1] == bench]
            for i, (model, _, protocol) in enumerate(keys):
                scores = self.subject_scores(model, bench, protocol, metric)
                vals = np.array([v for v in scores.values() if math.isfinite(v)])
                s = summarize(vals)
                if s.n:
                    ax.bar(i, s.mean, color=f"C{i % 10}", alpha=0.35, width=0.6)
                    ax.errorbar(i, s.mean, yerr=[[s.mean - s.ci_low], [s.ci_high - s.mean]], color="k", capsize=4)
                    jitter = np.linspace(-0.15, 0.15, vals.size) if vals.size > 1 else np.zeros(1)
                    ax.scatter(i + jitter, vals, color=f"C{i % 10}", edgecolor="k", zorder=3, s=22)
            ax.set_xticks(range(len(keys)))
            ax.set_xticklabels([f"{m}\n{p}" for m, _, p in keys], fontsize=7)
            ax.set_title(bench)
            ax.set_ylabel(f"{metric} (per subject)")
            if metric == "auc":
                ax.axhline(0.5, color="grey", ls="--", lw=0.8)  # chance
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def _fmt(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3f}"
