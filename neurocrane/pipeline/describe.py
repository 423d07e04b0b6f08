"""Human-readable descriptions of pipelines: the text table of ``Pipeline.describe()`` and the
HTML table notebooks show."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neurocrane.batch import SignalSpec
from neurocrane.errors import InputError, SpecError
from neurocrane.pipeline.transform import Transform

if TYPE_CHECKING:
    from neurocrane.pipeline.pipeline import Pipeline

__all__ = ["describe_pipeline", "describe_pipeline_html", "describe_rows"]


@dataclass
class Row:
    depth: int
    name: str
    op: str
    params: str
    output: str
    problem: bool = False


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        inner = ", ".join(_fmt_value(v) for v in value)
        if len(inner) > 60:
            inner = inner[:57] + "..."
        return f"[{inner}]"
    return str(value)


def _fmt_params(node: Transform) -> str:
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in node.non_default_params().items())


def _walk(steps: Any, spec: SignalSpec, training: bool, depth: int, rows: list[Row], warnings: list[str]) -> SignalSpec:
    from neurocrane.pipeline.pipeline import Branch, Pipeline

    for name, node in steps:
        if isinstance(node, Transform):
            params = _fmt_params(node)
            if node.training_only and not training:
                rows.append(Row(depth, name, node.op, params, "skipped (training-only step, eval mode)"))
                continue
            need = node.min_duration(spec)
            if need is not None and spec.duration is not None and need > spec.duration:
                warnings.append(
                    f"step '{name}' ({node.op}) needs about {need:.3g} s of signal to settle (impulse "
                    f"response) but would run on {spec.duration:.3g} s windows: its output near the "
                    "window edges will be distorted. Run it on the continuous recording "
                    "(pipeline.split()) or use longer windows."
                )
            try:
                spec = node.output_spec(spec)
                rows.append(Row(depth, name, node.op, params, str(spec)))
            except (SpecError, InputError) as err:
                problems = err.problems if isinstance(err, SpecError) else [str(err)]
                rows.append(Row(depth, name, node.op, params, f"!! {problems[0]}", problem=True))
                warnings += [f"step '{name}' ({node.op}): {p}" for p in problems]
        elif isinstance(node, Pipeline):
            row = Row(depth, name, "pipeline", "", "")
            rows.append(row)
            spec = _walk(node.steps, spec, training, depth + 1, rows, warnings)
            row.output = str(spec)
        elif isinstance(node, Branch):
            row = Row(depth, name, "branch", f"combine={node.combine}, axis={node.axis}", "")
            rows.append(row)
            outs = []
            for bname, bpipe in node.branches:
                rows.append(Row(depth + 1, f"[{bname}]", "", "", ""))
                outs.append(_walk(bpipe.steps, spec, training, depth + 2, rows, warnings))
            try:
                spec = node._combine_specs(outs)
                row.output = str(spec)
            except SpecError as err:
                row.output, row.problem = f"!! {err.problems[0]}", True
                warnings += [f"step '{name}' (branch): {p}" for p in err.problems]
    return spec


def describe_rows(pipeline: Pipeline, input_spec: SignalSpec | None, training: bool) -> tuple[list[Row], list[str], SignalSpec]:
    """Rows, warnings and final spec of a pipeline description."""
    rows: list[Row] = []
    warnings: list[str] = []
    spec = _walk(pipeline.steps, input_spec or SignalSpec(), training, 0, rows, warnings)
    return rows, warnings, spec


def _header(pipeline: Pipeline, training: bool) -> str:
    mode = "training" if training else "eval"
    return f"Pipeline: {len(pipeline)} steps, fingerprint {pipeline.fingerprint}, {mode} mode"


def describe_pipeline(pipeline: Pipeline, input_spec: SignalSpec | None, training: bool) -> str:
    """Text table: step, op, non-default parameters, output spec; then warnings."""
    rows, warnings, _ = describe_rows(pipeline, input_spec, training)
    header = ("step", "op", "parameters", "output")
    cells = [("  " * r.depth + r.name, r.op, r.params or "-", r.output) for r in rows]
    widths = [max(len(header[i]), *(len(c[i]) for c in cells)) for i in range(3)]

    def line(c: tuple[str, ...]) -> str:
        return "  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3]

    out = [_header(pipeline, training), f"input: {input_spec or SignalSpec()}", "", line(header)]
    out.append("  ".join("-" * w for w in widths) + "  " + "-" * max(6, max((len(c[3]) for c in cells), default=6)))
    out += [line(c) for c in cells]
    if warnings:
        out += ["", "warnings:"] + [f"  ! {w}" for w in warnings]
    return "\n".join(out)


def describe_pipeline_html(pipeline: Pipeline, input_spec: SignalSpec | None, training: bool) -> str:
    """The same description as an HTML table (for Jupyter's rich display)."""
    rows, warnings, _ = describe_rows(pipeline, input_spec, training)
    esc = html.escape
    body = []
    for r in rows:
        style = ' style="color:#b00020"' if r.problem else ""
        pad = f"padding-left:{0.3 + 1.2 * r.depth:.1f}em"
        body.append(
            f'<tr><td style="{pad};text-align:left"><b>{esc(r.name)}</b></td>'
            f'<td style="text-align:left"><code>{esc(r.op)}</code></td>'
            f'<td style="text-align:left">{esc(r.params)}</td>'
            f'<td style="text-align:left"{style}>{esc(r.output)}</td></tr>'
        )
    warn = ""
    if warnings:
        warn = "<ul>" + "".join(f'<li style="color:#b00020">{esc(w)}</li>' for w in warnings) + "</ul>"
    return (
        f'<div class="neurocrane-pipeline"><p><b>{esc(_header(pipeline, training))}</b></p>'
        f'<p>input: <code>{esc(str(input_spec or SignalSpec()))}</code></p>'
        '<table><thead><tr><th style="text-align:left">step</th><th style="text-align:left">op</th>'
        '<th style="text-align:left">parameters</th><th style="text-align:left">output</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{warn}</div>"
    )
