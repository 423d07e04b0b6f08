"""Exception types raised by neurocrane.

Every error neurocrane raises on purpose is a :class:`NeuroCraneError`. Most also subclass
the builtin a Python user would try first (``ValueError``, ``TypeError``, ``KeyError``), so
``except ValueError`` keeps working. Messages say what was expected, what was given and how
to fix it.

This module sits at the bottom of the import graph: everything may import it, it imports
nothing from neurocrane.
"""

from __future__ import annotations

__all__ = [
    "NeuroCraneError",
    "InputError",
    "InputDTypeError",
    "PipelineError",
    "TransformValidationError",
    "UnknownTransformError",
    "DuplicateTransformError",
    "DuplicateStepNameError",
    "PipelineFormatError",
    "SchemaVersionError",
    "SpecError",
    "AlreadyAppliedError",
]


class NeuroCraneError(Exception):
    """Base class of every error raised on purpose by neurocrane."""


class InputError(NeuroCraneError, ValueError):
    """Data given to an op or pipeline has the wrong shape, rank or metadata."""


class InputDTypeError(NeuroCraneError, TypeError):
    """Data given to an op or pipeline has a dtype it cannot work with (e.g. int16)."""


class PipelineError(NeuroCraneError, ValueError):
    """Base class of errors about building, loading or running a pipeline."""


class TransformValidationError(PipelineError):
    """A transform's parameters failed validation (type, range or cross-field rule).

    Attributes:
        op: Registry name of the transform.
        step: Name of the pipeline step, when the transform was built as part of one.
        problems: One human-readable line per problem, each naming the field.
    """

    def __init__(self, op: str, problems: list[str], step: str | None = None):
        self.op = op
        self.step = step
        self.problems = list(problems)
        where = f"step '{step}' (op '{op}')" if step else f"op '{op}'"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid parameters for {where}:\n{lines}")

    def with_step(self, step: str) -> TransformValidationError:
        """Return the same error, now naming the pipeline step it belongs to."""
        return TransformValidationError(self.op, self.problems, step=step)


class UnknownTransformError(PipelineError, KeyError):
    """A pipeline names an op that is not registered in this process."""

    def __str__(self) -> str:  # KeyError would quote the whole message otherwise
        return str(self.args[0]) if self.args else ""


class DuplicateTransformError(PipelineError):
    """Two different Transform classes tried to register the same op name."""


class DuplicateStepNameError(PipelineError):
    """Two steps of one pipeline (or branch) have the same name."""


class PipelineFormatError(PipelineError):
    """A pipeline file or dict is malformed (bad YAML/JSON, wrong layout, refused content)."""


class SchemaVersionError(PipelineFormatError):
    """A pipeline was written with a schema version this neurocrane cannot read."""


class SpecError(PipelineError):
    """Data (or its description) does not fit what one or more steps need.

    Attributes:
        problems: One line per incompatibility, each naming the step.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(message)


class AlreadyAppliedError(PipelineError):
    """A pipeline was run on a batch that it (or an identical pipeline) already processed."""
