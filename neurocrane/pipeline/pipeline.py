"""Pipelines: ordered, named steps (transforms, nested pipelines, branches) that run on batches.

A :class:`Pipeline` is immutable data: its steps and their parameters define it, it
serializes to a dict/JSON/YAML (see :mod:`neurocrane.pipeline.io`), and its ``fingerprint``
identifies the computation it performs. A :class:`Branch` runs several sub-pipelines on the
same input and combines their outputs, so pipelines are graphs, not only chains.

Example:
    >>> import torch
    >>> from neurocrane.pipeline import Pipeline
    >>> from neurocrane.preprocessing import CommonAverageReference, ZScore
    >>> pipe = Pipeline([CommonAverageReference(), ZScore()])
    >>> pipe(torch.randn(2, 8, 1000), sampling_rate=1000.0).shape
    torch.Size([2, 8, 1000])
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import torch

from neurocrane.batch import KNOWN_AXES, NeuralBatch, SignalSpec
from neurocrane.errors import (
    AlreadyAppliedError,
    DuplicateStepNameError,
    InputError,
    NeuroCraneError,
    PipelineError,
    SpecError,
    TransformValidationError,
)
from neurocrane.pipeline.transform import Transform, as_batch, restore_kind

__all__ = ["Pipeline", "Branch", "Node"]

Node = Union[Transform, "Pipeline", "Branch"]
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _base_name(node: Node) -> str:
    if isinstance(node, Transform):
        return node.op.rsplit(".", 1)[-1]
    return "branch" if isinstance(node, Branch) else "pipeline"


def _check_node(node: Any, where: str) -> Node:
    if isinstance(node, Transform | Pipeline | Branch):
        return node
    if isinstance(node, type) and issubclass(node, Transform):
        raise PipelineError(
            f"{where}: got the class {node.__name__}, not an instance; write {node.__name__}() "
            "(with its parameters)."
        )
    raise PipelineError(
        f"{where}: a step must be a Transform, Pipeline or Branch; got {type(node).__name__} "
        f"({node!r:.60}). Plain functions cannot be stored as data: wrap them in a Transform."
    )


def _normalize_steps(steps: Any, owner: str) -> tuple[tuple[str, Node], ...]:
    """Turn the accepted step forms into ``((name, node), ...)`` with unique names."""
    if isinstance(steps, Transform | Pipeline | Branch):
        steps = [steps]
    if isinstance(steps, Mapping):
        items = [(str(k), v) for k, v in steps.items()]
    elif isinstance(steps, Sequence) and not isinstance(steps, str):
        items = []
        for item in steps:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str | None):
                items.append(item)
            else:
                items.append((None, item))
    else:
        raise PipelineError(
            f"{owner}: steps must be a list of transforms (or (name, transform) pairs) or a "
            f"dict name → transform; got {type(steps).__name__}."
        )
    if not items:
        raise PipelineError(
            f"{owner}: a pipeline needs at least one step; got none. For a model without "
            "preprocessing use Pipeline([Identity()])."
        )
    explicit = [name for name, _ in items if name is not None]
    for name in explicit:
        if not _NAME_RE.match(name):
            raise PipelineError(
                f"{owner}: step name {name!r} may only use letters, digits, '_', '.' and '-'."
            )
    dupes = sorted({n for n in explicit if explicit.count(n) > 1})
    if dupes:
        raise DuplicateStepNameError(
            f"{owner}: step names must be unique; {dupes} used more than once. Rename the steps "
            "(e.g. 'notch_60' and 'notch_50')."
        )
    taken = set(explicit)
    out = []
    for i, (name, node) in enumerate(items):
        node = _check_node(node, f"{owner} step {i}")
        if name is None:
            name = _unique_auto_name(_base_name(node), taken)
            taken.add(name)
        out.append((name, node))
    return tuple(out)


def _unique_auto_name(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    k = 1
    while f"{base}_{k}" in taken:
        k += 1
    return f"{base}_{k}"


def _is_auto_name(name: str, node: Node) -> bool:
    return re.fullmatch(rf"{re.escape(_base_name(node))}(_\d+)?", name) is not None


def _step_label(name: str, node: Node) -> str:
    op = node.op if isinstance(node, Transform) else _base_name(node)
    return f"step '{name}' (op '{op}')"


def _canonical_json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


class Pipeline:
    """An ordered list of named preprocessing steps.

    Args:
        steps: Transforms, nested pipelines and branches, as a list (names are made from
            the op, numbered when repeated), a list of ``(name, step)`` pairs, or a dict.
        training: Start in training mode (training-only steps run). Default: eval mode.

    Pipelines are immutable: ``append``, ``insert``, ``+`` and slicing return new pipelines.
    Calling one with a tensor returns a tensor; with a :class:`NeuralBatch`, a batch.

    Example:
        >>> pipe = Pipeline([("car", CommonAverageReference()), ("z", ZScore())])
        >>> pipe["z"]
        ZScore()
        >>> print(pipe.describe(SignalSpec(shape=(None, 64, 2048), sampling_rate=2048.0)))
    """

    def __init__(self, steps: Any, *, training: bool = False):
        self._steps = _normalize_steps(steps, "Pipeline")
        self.training = bool(training)
        self._fingerprint: str | None = None
        self._prefix_fingerprints: tuple[str, ...] | None = None

    # -- structure ------------------------------------------------------------------------
    @property
    def steps(self) -> tuple[tuple[str, Node], ...]:
        """``((name, step), ...)`` in order."""
        return self._steps

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[Node]:
        return (node for _, node in self._steps)

    def __getitem__(self, key: int | str | slice) -> Any:
        """Step by position, by name (``"outer/inner"`` reaches into nested pipelines), or a
        sub-pipeline by slice."""
        if isinstance(key, slice):
            part = self._steps[key]
            if not part:
                raise PipelineError(
                    f"slice {key} of a {len(self)}-step pipeline is empty; a pipeline needs at least one step."
                )
            return Pipeline(list(part), training=self.training)
        if isinstance(key, int):
            try:
                return self._steps[key][1]
            except IndexError:
                raise IndexError(f"step index {key} out of range for a {len(self)}-step pipeline") from None
        if isinstance(key, str):
            head, _, rest = key.partition("/")
            for name, node in self._steps:
                if name == head:
                    if not rest:
                        return node
                    if isinstance(node, Pipeline | Branch):
                        return node[rest]
                    break
            raise KeyError(f"no step named {key!r}; steps are {list(self.names)}")
        raise TypeError(f"pipelines are indexed by int, str or slice; got {type(key).__name__}")

    def index(self, key: int | str) -> int:
        """Position of a step given by name or (possibly negative) position."""
        if isinstance(key, int):
            if not -len(self) <= key < len(self):
                raise IndexError(f"step index {key} out of range for a {len(self)}-step pipeline")
            return key % len(self)
        try:
            return self.names.index(key)
        except ValueError:
            raise KeyError(f"no step named {key!r}; steps are {list(self.names)}") from None

    def _combined(self, steps: list[tuple[str, Node]]) -> Pipeline:
        """Build a pipeline from joined step lists, renumbering clashing auto-made names."""
        taken: set[str] = set()
        out = []
        for name, node in steps:
            if name in taken:
                if not _is_auto_name(name, node):
                    raise DuplicateStepNameError(
                        f"cannot join pipelines: step name {name!r} appears in both. Rename one "
                        "(Pipeline([(new_name, step), ...]))."
                    )
                name = _unique_auto_name(_base_name(node), taken)
            taken.add(name)
            out.append((name, node))
        return Pipeline(out, training=self.training)

    def append(self, step: Node, name: str | None = None) -> Pipeline:
        """Return a new pipeline with ``step`` added at the end."""
        return self.insert(len(self), step, name)

    def insert(self, index: int, step: Node, name: str | None = None) -> Pipeline:
        """Return a new pipeline with ``step`` inserted before position ``index``."""
        step = _check_node(step, "insert")
        new_name = name or _unique_auto_name(_base_name(step), set(self.names))
        if name is not None and name in self.names:
            raise DuplicateStepNameError(f"a step named {name!r} already exists; steps are {list(self.names)}")
        steps = list(self._steps)
        steps.insert(index, (new_name, step))
        return Pipeline(steps, training=self.training)

    def replace_step(self, key: int | str, step: Node) -> Pipeline:
        """Return a new pipeline with one step swapped (it keeps its name)."""
        i = self.index(key)
        steps = list(self._steps)
        steps[i] = (steps[i][0], _check_node(step, "replace_step"))
        return Pipeline(steps, training=self.training)

    def __add__(self, other: Pipeline | Transform) -> Pipeline:
        if isinstance(other, Transform | Branch):
            other = Pipeline([other])
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self._combined([*self._steps, *other._steps])

    def __radd__(self, other: Transform) -> Pipeline:
        if isinstance(other, Transform | Branch):
            return Pipeline([other]) + self
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self._steps == other._steps

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    # -- modes ----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Pipeline:
        """Set training mode (training-only steps run) in place and return ``self``, like
        ``torch.nn.Module.train``."""
        self.training = bool(mode)
        return self

    def eval(self) -> Pipeline:
        """Set eval mode (training-only steps are skipped) and return ``self``."""
        return self.train(False)

    # -- identity -------------------------------------------------------------------------
    def _fingerprint_payload(self) -> list[Any]:
        return [_node_payload(node) for _, node in self._steps]

    @property
    def fingerprint(self) -> str:
        """Stable hash (hex, 16 chars) of the ops and parameters in order.

        Step names and the neurocrane version that wrote the pipeline do not change it; any
        parameter, op or order change does. Equal across processes and machines.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256(_canonical_json(self._fingerprint_payload()).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def _prefixes(self) -> tuple[str, ...]:
        # fingerprints of self[:k] for k = 1..len-1 (the full one is self.fingerprint)
        if self._prefix_fingerprints is None:
            payload = self._fingerprint_payload()
            self._prefix_fingerprints = tuple(
                hashlib.sha256(_canonical_json(payload[:k]).encode()).hexdigest()[:16]
                for k in range(1, len(payload))
            )
        return self._prefix_fingerprints

    # -- running --------------------------------------------------------------------------
    def __call__(
        self,
        data: torch.Tensor | NeuralBatch,
        *,
        training: bool | None = None,
        reapply: bool = False,
        **metadata: Any,
    ) -> torch.Tensor | NeuralBatch:
        """Run the pipeline.

        Args:
            data: A float tensor ``(batch, channels, time)`` or ``(channels, time)``, or a
                :class:`NeuralBatch`.
            training: Override the pipeline's mode for this call.
            reapply: Run even if the batch records this pipeline as already applied.
            **metadata: For tensor input: ``sampling_rate``, ``channel_names``,
                ``channel_positions``, ``channel_mask``.

        Returns:
            The same kind as ``data``: a tensor of the same rank, or a ``NeuralBatch`` that
            records this pipeline's fingerprint in ``applied``.

        Raises:
            AlreadyAppliedError: the batch already went through this pipeline.
            SpecError: the data does not fit one or more steps (all are listed).
        """
        batch, kind = as_batch(data, **metadata)
        training = self.training if training is None else training
        start = self.resume_point(batch, reapply=reapply)
        steps = self._steps[start:]
        _validate_steps(steps, batch.spec, training)
        out = _run_steps(steps, batch, training)
        return restore_kind(out.with_applied(self.fingerprint), kind)

    def resume_point(self, batch: NeuralBatch, *, reapply: bool = False) -> int:
        """Index of the first step still to run on ``batch``.

        0 for a batch no part of this pipeline has touched; ``k`` when the first ``k`` steps (a
        recording-level part, see :meth:`split`) were applied already, as the fingerprint of that
        prefix in ``batch.applied`` says. :meth:`__call__` starts there.

        Args:
            batch: The batch to be preprocessed.
            reapply: With the whole pipeline already applied, start again at 0 instead of raising.

        Returns:
            The step index to start from (``0 <= k < len(self)``).

        Raises:
            AlreadyAppliedError: the whole pipeline was applied to ``batch`` already.

        Example:
            >>> recording_part, _ = pipe.split(at=1)
            >>> pipe.resume_point(recording_part(batch))
            1
        """
        if not batch.applied:
            return 0
        if self.fingerprint in batch.applied:
            if reapply:
                return 0
            raise AlreadyAppliedError(
                f"this pipeline (fingerprint {self.fingerprint}) was already applied to the batch; "
                "preprocessing twice would corrupt the data. Pass reapply=True if you really "
                "mean to run it again."
            )
        applied = set(batch.applied)
        for k in range(len(self) - 1, 0, -1):
            if self._prefixes()[k - 1] in applied:
                return k
        return 0

    def _run(self, batch: NeuralBatch, training: bool) -> NeuralBatch:
        return _run_steps(self._steps, batch, training)

    def validate(self, input_spec: SignalSpec | None = None, *, training: bool | None = None) -> SignalSpec:
        """Check that data described by ``input_spec`` can run through every step.

        Returns:
            The spec of the output.

        Raises:
            SpecError: listing every incompatibility found (not only the first).
        """
        training = self.training if training is None else training
        return _validate_steps(self._steps, input_spec or SignalSpec(), training)

    def output_spec(self, spec: SignalSpec, training: bool = False) -> SignalSpec:
        """Spec of the output for input ``spec`` (raises :class:`SpecError` on problems)."""
        return _validate_steps(self._steps, spec, training)

    # -- splitting (DESIGN.md §7) ---------------------------------------------------------
    def split(self, at: int | str | None = None) -> tuple[Pipeline | None, Pipeline | None]:
        """Cut into a recording part (run once on continuous recordings) and a window part.

        Args:
            at: First step of the window part, by name or position. Default: just after the
                last step that wants continuous input (filters, resampling); when no step
                does, the recording part is ``None``.

        Returns:
            ``(recording_part, window_part)``; either may be ``None`` when empty. Running the
            recording part, then the whole pipeline on its output, runs only the window part.

        Raises:
            PipelineError: when a step that must see windows (per-window statistics,
                training-only steps) would land in the recording part.
        """
        if at is None:
            cut = 0
            for i, (_, node) in enumerate(self._steps):
                if _wants_continuous(node):
                    cut = i + 1
        else:
            cut = len(self) if at == len(self) else self.index(at)
        for name, node in self._steps[:cut]:
            problem = _recording_problem(node)
            if problem:
                raise PipelineError(
                    f"cannot put {_step_label(name, node)} in the recording part: {problem}. "
                    "Move it after the continuous steps, or split earlier with split(at=...)."
                )
        recording = Pipeline(list(self._steps[:cut]), training=self.training) if cut else None
        window = Pipeline(list(self._steps[cut:]), training=self.training) if cut < len(self) else None
        return recording, window

    # -- description ----------------------------------------------------------------------
    def describe(self, input_spec: SignalSpec | None = None, *, training: bool | None = None) -> str:
        """A readable table: one row per step (nested steps indented) with its op, the
        parameters that differ from their defaults, and the spec after the step.

        Args:
            input_spec: Description of the input; unknown sizes show as symbols (B, C, T).
            training: Describe in training mode (default: the pipeline's mode).

        Returns:
            The table, followed by any warnings (e.g. a filter on windows shorter than its
            impulse response, or a step that cannot accept its input).
        """
        from neurocrane.pipeline.describe import describe_pipeline

        return describe_pipeline(self, input_spec, self.training if training is None else training)

    def _repr_html_(self) -> str:
        from neurocrane.pipeline.describe import describe_pipeline_html

        return describe_pipeline_html(self, None, self.training)

    def __repr__(self) -> str:
        chain = " -> ".join(self.names)
        mode = ", training" if self.training else ""
        return f"Pipeline({len(self)} steps: {chain}{mode})"

    # -- serialization (implemented in io.py) ---------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The pipeline as a plain dict (format tag, schema version, steps)."""
        from neurocrane.pipeline import io

        return io.pipeline_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pipeline:
        """Build a pipeline from :meth:`to_dict` output (older schema versions are migrated)."""
        from neurocrane.pipeline import io

        return io.pipeline_from_dict(data)

    def to_json(self, **json_kwargs: Any) -> str:
        from neurocrane.pipeline import io

        return io.dumps_json(self.to_dict(), **json_kwargs)

    @classmethod
    def from_json(cls, text: str) -> Pipeline:
        from neurocrane.pipeline import io

        return cls.from_dict(io.loads_json(text))

    def to_yaml(self) -> str:
        from neurocrane.pipeline import io

        return io.dumps_yaml(self.to_dict())

    @classmethod
    def from_yaml(cls, text: str) -> Pipeline:
        from neurocrane.pipeline import io

        return cls.from_dict(io.loads_yaml(text))

    def save(self, path: str | Path) -> Path:
        """Write to ``.yaml``/``.yml``/``.json`` (by suffix) atomically; returns the path."""
        from neurocrane.pipeline import io

        return io.save_pipeline(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Read a pipeline file written by :meth:`save` (or by hand)."""
        from neurocrane.pipeline import io

        return io.load_pipeline(path)

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, **hub_kwargs: Any) -> Pipeline:
        """Load only the preprocessing pipeline stored in a model's ``config.json``."""
        from neurocrane.pipeline import io

        return io.pipeline_from_pretrained(path_or_repo_id, **hub_kwargs)


class Branch:
    """Run several sub-pipelines on the same input and combine their outputs.

    Args:
        branches: ``{name: step_or_steps}`` (or a list of ``(name, steps)`` pairs); each
            value is a Transform, a Pipeline or a list of steps.
        combine: ``"concat"`` joins outputs along an existing axis; ``"stack"`` stacks them
            along a new axis inserted after ``channel``.
        axis: For ``concat``: ``"channel"`` (default; channel names become
            ``"<branch>/<channel>"``), ``"freq"``, ``"feature"`` or ``"time"``. For ``stack``:
            the new axis name, default ``"feature"``.

    Example:
        >>> Branch({"raw": ZScore(), "spec": Spectrogram()}, combine="concat", axis="channel")
    """

    def __init__(
        self,
        branches: Mapping[str, Any] | Sequence[tuple[str, Any]],
        *,
        combine: Literal["concat", "stack"] = "concat",
        axis: str | None = None,
    ):
        if combine not in ("concat", "stack"):
            raise PipelineError(f"Branch combine must be 'concat' or 'stack'; got {combine!r}.")
        axis = axis or ("channel" if combine == "concat" else "feature")
        if axis not in KNOWN_AXES or axis == "batch":
            raise PipelineError(
                f"Branch axis must be one of {sorted(KNOWN_AXES - {'batch'})}; got {axis!r}."
            )
        if combine == "stack" and axis in ("channel", "time"):
            raise PipelineError(
                f"Branch(combine='stack') adds a new axis; {axis!r} already exists in every "
                "output. Use axis='feature' (or combine='concat')."
            )
        items = list(branches.items()) if isinstance(branches, Mapping) else list(branches)
        if len(items) < 2:
            raise PipelineError(f"a Branch needs at least two branches to combine; got {len(items)}.")
        names = [str(n) for n, _ in items]
        if len(set(names)) != len(names):
            raise DuplicateStepNameError(f"Branch names must be unique; got {names}.")
        built = []
        for name, value in items:
            if not _NAME_RE.match(name):
                raise PipelineError(f"branch name {name!r} may only use letters, digits, '_', '.' and '-'.")
            built.append((name, value if isinstance(value, Pipeline) else Pipeline(value)))
        self.branches: tuple[tuple[str, Pipeline], ...] = tuple(built)
        self.combine = combine
        self.axis = axis

    def __getitem__(self, key: str) -> Any:
        head, _, rest = key.partition("/")
        for name, pipe in self.branches:
            if name == head:
                return pipe[rest] if rest else pipe
        raise KeyError(f"no branch named {head!r}; branches are {[n for n, _ in self.branches]}")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Branch)
            and self.branches == other.branches
            and (self.combine, self.axis) == (other.combine, other.axis)
        )

    def __hash__(self) -> int:
        return hash(_canonical_json(_node_payload(self)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}: {p!r}" for n, p in self.branches)
        return f"Branch({inner}; combine={self.combine!r}, axis={self.axis!r})"

    def _run(self, batch: NeuralBatch, training: bool) -> NeuralBatch:
        outputs = [pipe._run(batch, training) for _, pipe in self.branches]
        return self._combine(outputs, batch)

    def output_spec(self, spec: SignalSpec, training: bool = False) -> SignalSpec:
        specs = []
        problems = []
        for name, pipe in self.branches:
            try:
                specs.append(_validate_steps(pipe.steps, spec, training))
            except SpecError as err:
                problems += [f"branch '{name}': {p}" for p in err.problems]
        if problems:
            raise SpecError(problems)
        return self._combine_specs(specs)

    def _combine_specs(self, specs: list[SignalSpec]) -> SignalSpec:
        first = specs[0]
        names = [n for n, _ in self.branches]
        if self.combine == "stack":
            for name, s in zip(names[1:], specs[1:], strict=True):
                if s.axes != first.axes or s.shape[1:] != first.shape[1:]:
                    raise SpecError(
                        f"Branch(stack): branch '{name}' gives {s}, branch '{names[0]}' gives "
                        f"{first}; stacked outputs must have the same shape and axes."
                    )
            if self.axis in first.axes:
                raise SpecError(f"Branch(stack): outputs already have a '{self.axis}' axis.")
            return first.replace(
                shape=(first.shape[0], first.shape[1], len(specs), *first.shape[2:]),
                axes=(first.axes[0], first.axes[1], self.axis, *first.axes[2:]),
            )
        for name, s in zip(names[1:], specs[1:], strict=True):
            if s.axes != first.axes:
                raise SpecError(
                    f"Branch(concat): branch '{name}' has axes {s.axes}, branch '{names[0]}' "
                    f"{first.axes}; concatenated outputs need the same axes."
                )
            if self.axis not in s.axes:
                raise SpecError(f"Branch(concat): outputs have no '{self.axis}' axis ({s.axes}).")
            if s.sampling_rate != first.sampling_rate:
                raise SpecError(
                    f"Branch(concat): branch '{name}' runs at {s.sampling_rate} Hz, branch "
                    f"'{names[0]}' at {first.sampling_rate} Hz; resample one of them."
                )
        ax = first.axes.index(self.axis)
        for name, s in zip(names[1:], specs[1:], strict=True):
            for i, (a, b) in enumerate(zip(s.shape, first.shape, strict=True)):
                if i not in (0, ax) and None not in (a, b) and a != b:
                    raise SpecError(
                        f"Branch(concat along {self.axis}): branch '{name}' gives {s}, branch "
                        f"'{names[0]}' gives {first}; all other axes must match."
                    )
        sizes = [s.shape[ax] for s in specs]
        total = None if None in sizes else sum(sizes)
        shape = list(first.shape)
        shape[ax] = total
        changes: dict[str, Any] = {"shape": tuple(shape)}
        if self.axis == "channel":
            if all(s.channel_names is not None for s in specs):
                changes["channel_names"] = tuple(
                    f"{n}/{c}" for n, s in zip(names, specs, strict=True) for c in s.channel_names
                )
            else:
                changes["channel_names"] = None
            changes["has_positions"] = all(s.has_positions for s in specs)
        elif self.axis == "freq":
            freqs = [s.frequencies for s in specs]
            changes["frequencies"] = None if None in freqs else tuple(f for fs in freqs for f in fs)
        return first.replace(**changes)

    def _combine(self, outputs: list[NeuralBatch], source: NeuralBatch) -> NeuralBatch:
        specs = [o.spec for o in outputs]
        spec = self._combine_specs(specs)
        first = outputs[0]
        if self.combine == "stack":
            signals = torch.stack([o.signals for o in outputs], dim=2)
            mask = _and_masks([o.channel_mask for o in outputs])
            return first.replace(signals=signals, axes=spec.axes, channel_mask=mask, applied=source.applied)
        ax = first.axes.index(self.axis)
        signals = torch.cat([o.signals for o in outputs], dim=ax)
        changes: dict[str, Any] = {"signals": signals, "applied": source.applied}
        if self.axis == "channel":
            changes["channel_names"] = spec.channel_names
            pos = [o.channel_positions for o in outputs]
            changes["channel_positions"] = None if any(p is None for p in pos) else torch.cat(pos)
            masks = [o.channel_mask for o in outputs]
            if any(m is not None for m in masks):
                masks = [
                    torch.ones(o.batch_size, o.n_channels, dtype=torch.bool, device=o.device) if m is None else m
                    for o, m in zip(outputs, masks, strict=True)
                ]
                changes["channel_mask"] = torch.cat(masks, dim=1)
        else:
            changes["channel_mask"] = _and_masks([o.channel_mask for o in outputs])
            if self.axis == "freq":
                changes["frequencies"] = spec.frequencies
        return first.replace(**changes)


def _and_masks(masks: list[torch.Tensor | None]) -> torch.Tensor | None:
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out


def _node_payload(node: Node) -> Any:
    if isinstance(node, Transform):
        return node.to_dict()
    if isinstance(node, Pipeline):
        return {"op": "pipeline", "steps": node._fingerprint_payload()}
    return {
        "op": "branch",
        "combine": node.combine,
        "axis": node.axis,
        "branches": [[name, pipe._fingerprint_payload()] for name, pipe in node.branches],
    }


def _wants_continuous(node: Node) -> bool:
    if isinstance(node, Transform):
        return node.wants_continuous
    if isinstance(node, Pipeline):
        return any(_wants_continuous(n) for n in node)
    return any(_wants_continuous(p) for _, p in node.branches)


def _recording_problem(node: Node) -> str | None:
    if isinstance(node, Transform):
        if node.training_only:
            return "it is a training-only step, and the recording part is cached for all runs"
        if not node.recording_safe:
            return "it computes per-window statistics, which differ on a whole recording"
        return None
    children = list(node) if isinstance(node, Pipeline) else [p for _, p in node.branches]
    for child in children:
        problem = _recording_problem(child)
        if problem:
            return problem
    return None


def _run_steps(steps: Sequence[tuple[str, Node]], batch: NeuralBatch, training: bool) -> NeuralBatch:
    for name, node in steps:
        try:
            if isinstance(node, Transform):
                if node.training_only and not training:
                    continue
                batch = node.apply(batch)
            else:
                batch = node._run(batch, training)
        except NeuroCraneError as err:
            if not getattr(err, "_step_noted", False):
                err.add_note(f"raised in pipeline {_step_label(name, node)}")
                err._step_noted = True  # type: ignore[attr-defined]
            raise
    return batch


def _validate_steps(steps: Sequence[tuple[str, Node]], spec: SignalSpec, training: bool) -> SignalSpec:
    """Propagate ``spec`` through the steps, collecting every problem into one SpecError."""
    problems: list[str] = []
    for name, node in steps:
        if isinstance(node, Transform) and node.training_only and not training:
            continue
        try:
            if isinstance(node, Transform):
                spec = node.output_spec(spec)
            else:
                spec = node.output_spec(spec, training)
        except SpecError as err:
            problems += [f"{_step_label(name, node)}: {p}" for p in err.problems]
        except (InputError, TransformValidationError) as err:
            problems.append(f"{_step_label(name, node)}: {err}")
    if problems:
        raise SpecError(problems)
    return spec
