"""A benchmark with a known answer: detect high-gamma events in the synthetic SEEG corpus.

The synthetic corpus (:mod:`neurocrane.data.synthetic`) drives a high-gamma (70-150 Hz) burst
in a few contacts at every labelled event, buried under 1/f background and line noise whose
2nd harmonic falls inside the high-gamma band. So:

* a **sound pipeline** (line-noise notch, then high-gamma power) plus a linear probe separates
  event windows from rest windows almost perfectly (AUROC near 1);
* a **broken pipeline** (e.g. only low frequencies kept) or **shuffled labels** fall to chance
  (AUROC about 0.5).

The task is ``"binary"`` (event vs rest) or ``"multiclass"`` (rest / each event label; each label
drives its own contacts). Event windows are centred on their event and last ``context_length``
seconds; rest windows sit half-way between events, at least ``margin_s`` from any event and
clear of the corpus' NaN gaps.

Example:
    >>> bench = SyntheticEventBenchmark(n_subjects=2, duration_s=40.0)
    >>> base = PipelineBaseline(high_gamma_pipeline(), name="high-gamma")
    >>> bench.evaluate(base, protocol="linear_probe")["auc"]    # close to 1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurocrane.data.recording import Recording
from neurocrane.data.synthetic import HIGH_GAMMA, make_synthetic_corpus, make_synthetic_recording
from neurocrane.evaluation.benchmark import BenchmarkError, WindowBenchmark, WindowBenchmarkData
from neurocrane.pipeline import Pipeline
from neurocrane.preprocessing import BandPower, Notch

__all__ = ["SyntheticEventBenchmark", "event_windows", "high_gamma_pipeline"]

REST = "rest"


def high_gamma_pipeline(line_freq: float = 60.0) -> Pipeline:
    """The sound pipeline for this benchmark: notch the line noise (all harmonics below
    Nyquist), then log high-gamma (70-150 Hz) power per channel, averaged over the window.

    Returns:
        A :class:`Pipeline`; its notch is the recording part (runs on whole recordings).

    Example:
        >>> high_gamma_pipeline(50.0)["notch"].line_freq
        50.0
    """
    return Pipeline([
        ("notch", Notch(line_freq=float(line_freq))),
        ("high_gamma", BandPower(bands=(("high_gamma", *HIGH_GAMMA),), average=True, log=True)),
    ])


def event_windows(
    recording: Recording, context_length: float = 1.0, *, margin_s: float = 0.5, multiclass: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Window starts (s) and labels of one synthetic recording: one window per event, one rest
    window between consecutive events.

    Args:
        recording: A synthetic recording (events and ``info["nan_gaps"]``).
        context_length: Window length in seconds.
        margin_s: Minimum distance of a rest window from any event.
        multiclass: Label event windows with their event label (else ``"event"``).

    Returns:
        ``(starts_s, labels)`` arrays; event windows are centred on their event.
    """
    events = sorted(recording.events, key=lambda e: e.onset)
    gaps = [tuple(g) for g in (recording.info.get("nan_gaps") or [])]
    starts, labels = [], []

    def clear(a: float, b: float) -> bool:
        inside = 0 <= a and b <= recording.duration
        return inside and all(b <= g0 or a >= g1 for g0, g1 in gaps)

    for i, ev in enumerate(events):
        start = ev.onset + (ev.duration - context_length) / 2.0  # centred on the burst
        if clear(start, start + context_length):
            starts.append(start)
            labels.append(ev.label if multiclass else "event")
        if i + 1 < len(events):
            lo, hi = ev.end + margin_s, events[i + 1].onset - margin_s
            if hi - lo >= context_length:
                mid = (lo + hi - context_length) / 2.0
                if clear(mid, mid + context_length):
                    starts.append(mid)
                    labels.append(REST)
    return np.asarray(starts, dtype=np.float64), np.asarray(labels)


class SyntheticEventBenchmark(WindowBenchmark):
    """Event detection in high-gamma power of the synthetic corpus (a known ceiling).

    Args:
        name: Benchmark name.
        task: ``"binary"`` (event vs rest) or ``"multiclass"`` (rest and each event label).
        n_subjects, sessions_per_subject, duration_s, sampling_rate, line_freq, hg_snr, event_labels, corpus_seed:
            Corpus generation (see
            :func:`~neurocrane.data.synthetic.make_synthetic_recording`).
        root: Write the corpus there (memory-mapped, reused on reruns); ``None`` keeps it in
            memory.
        context_length: Window length in seconds.
        split, k, split_kwargs: How windows are split (default: within-session, time-blocked,
            one split).
        shuffle_labels: Permute labels within each session (the chance-level control).
        requires_finetuning: Default protocol of :meth:`evaluate`.
        batch_size: Windows per batch.
        corpus_kwargs: Other generator arguments (``event_interval_s``, ``nan_gap_probability``, ...).
        **kwargs: :class:`WindowBenchmark` options (``protocols``, ``probe``, ``pool``,
            ``feature_key``, ``finetune_config``, ``seed``, ``cache_dir``).

    Attributes:
        chance_auc: 0.5, the AUROC of a model that learned nothing.

    Example:
        >>> bench = SyntheticEventBenchmark(n_subjects=1, duration_s=40.0, shuffle_labels=True)
    """

    chance_auc = 0.5

    def __init__(
        self,
        name: str = "synthetic-events",
        *,
        task: str = "binary",
        n_subjects: int = 2,
        sessions_per_subject: int = 1,
        duration_s: float = 60.0,
        sampling_rate: float = 512.0,
        line_freq: float = 60.0,
        hg_snr: float = 2.0,
        event_labels: Sequence[str] = ("stim_a", "stim_b"),
        corpus_seed: int = 0,
        root: str | Path | None = None,
        context_length: float = 1.0,
        split: str = "within_session",
        k: int | None = None,
        split_kwargs: Mapping[str, Any] | None = None,
        shuffle_labels: bool = False,
        requires_finetuning: bool = False,
        batch_size: int = 32,
        corpus_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        if task not in ("binary", "multiclass"):
            raise BenchmarkError(f"SyntheticEventBenchmark task must be 'binary' or 'multiclass'; got {task!r}.")
        corpus = dict(duration_s=duration_s, sampling_rate=sampling_rate, line_freq=line_freq, hg_snr=hg_snr,
                      event_labels=tuple(event_labels), seed=corpus_seed, **dict(corpus_kwargs or {}))
        if root is not None:
            index = make_synthetic_corpus(root, n_subjects=n_subjects, sessions_per_subject=sessions_per_subject, **corpus)
            recordings = list(index)
        else:
            recordings = [
                make_synthetic_recording(subject=s, session=e, **corpus)
                for s in range(n_subjects) for e in range(sessions_per_subject)
            ]
        multiclass = task == "multiclass"
        label_map = [REST, *event_labels] if multiclass else [REST, "event"]
        windows = []
        for i, rec in enumerate(recordings):
            starts, labels = event_windows(rec, context_length, multiclass=multiclass)
            if shuffle_labels:
                labels = np.random.default_rng([corpus_seed, i, 7]).permutation(labels)
            windows.append((starts, labels))
        data = WindowBenchmarkData(
            recordings, windows, context_length, task="classification", label_map=label_map, split=split, k=k,
            split_kwargs=split_kwargs, batch_size=batch_size,
        )
        self.task_kind, self.shuffle_labels, self.line_freq = task, bool(shuffle_labels), float(line_freq)
        super().__init__(name, data, requires_finetuning, **kwargs)

    def high_gamma_pipeline(self) -> Pipeline:
        """:func:`high_gamma_pipeline` at this corpus' line frequency."""
        return high_gamma_pipeline(self.line_freq)
