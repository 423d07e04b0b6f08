"""Generate the YAML op reference (``reference/ops.md``) from the registered ops (MkDocs hook).

Everything on the page comes from the op classes themselves: the op names from the registry,
parameter names, types, defaults and constraints from their pydantic models (JSON schema),
descriptions from their docstrings' ``Args:`` sections, and the YAML examples by running the
docstring ``Example:`` lines and serializing the steps they build. The page therefore cannot
drift from the code: a new op, field or default shows up on the next build, and a docstring
example that no longer builds a valid step fails the build.

Used two ways:

* as an MkDocs hook (``hooks:`` in ``mkdocs.yml``): the page is generated in memory on every
  build, never written into ``docs/``;
* as a script: ``python docs/gen_ops_reference.py [out.md]`` prints or writes the page.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

PAGE_PATH = "reference/ops.md"

# Section per preprocessing module, in the order the data usually flows.
SECTIONS = [
    ("neurocrane.preprocessing.rereferencing", "Re-referencing"),
    ("neurocrane.preprocessing.filtering", "Filtering and resampling"),
    ("neurocrane.preprocessing.spectral", "Spectral"),
    ("neurocrane.preprocessing.normalization", "Normalization"),
    ("neurocrane.preprocessing.spatial", "Spatial (electrodes)"),
    ("neurocrane.preprocessing.layout", "Layout"),
    ("neurocrane.pipeline.transform", "Structure"),
]

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj):`~?([^`]+)`")


def _plain_rst(text: str) -> str:
    """reST roles and double backticks to Markdown code spans."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return text.replace("``", "`")


def _docstring_parts(cls: type) -> tuple[str, dict[str, str]]:
    """The prose before the first section, and ``{parameter: description}`` from ``Args:``."""
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    prose: list[str] = []
    args: dict[str, str] = {}
    section = None
    current: list[str] = []
    names: list[str] = []

    def flush() -> None:
        if names:
            text = " ".join(s.strip() for s in current).strip()
            for n in names:
                args[n] = text

    for line in lines:
        header = re.fullmatch(r"([A-Z][A-Za-z ]*):", line.strip())
        if header and not line.startswith(" "):
            flush()
            names, current = [], []
            section = header.group(1)
            continue
        if section is None:
            prose.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            item = re.match(r"^ {4}([A-Za-z_][\w, ]*):\s*(.*)$", line)
            if item:
                flush()
                names = [n.strip() for n in item.group(1).split(",") if n.strip()]
                current = [item.group(2)]
            elif line.strip():
                current.append(line)
    flush()
    return _plain_rst("\n".join(prose).strip()), {k: _plain_rst(v) for k, v in args.items()}


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None and args:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{name}[{inner}]"
    return str(annotation).replace("typing.", "")


_BOUNDS = [
    ("exclusiveMinimum", "> {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMaximum", "< {}"),
    ("maximum", "≤ {}"),
    ("minItems", "≥ {} items"),
    ("maxItems", "≤ {} items"),
    ("minLength", "≥ {} characters"),
    ("maxLength", "≤ {} characters"),
    ("pattern", "matches `{}`"),
]


def _constraints(prop: dict[str, Any]) -> str:
    found = []
    for branch in [prop, *prop.get("anyOf", [])]:
        for key, fmt in _BOUNDS:
            if key in branch and not (key in ("minItems", "maxItems") and "prefixItems" in branch):
                found.append(fmt.format(branch[key]))
    return ", ".join(dict.fromkeys(found))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _example_steps(cls: type) -> list[Any]:
    """Run the docstring examples in the namespace of the op's module and keep the steps of
    this op they build (directly, by assignment, or inside a Pipeline)."""
    import neurocrane.pipeline as pipeline_pkg
    import neurocrane.preprocessing as preprocessing_pkg

    namespace: dict[str, Any] = {**vars(sys.modules[cls.__module__])}
    namespace.update({k: getattr(pipeline_pkg, k) for k in pipeline_pkg.__all__})
    namespace.update({k: getattr(preprocessing_pkg, k) for k in preprocessing_pkg.__all__})
    namespace[cls.__name__] = cls
    steps: list[Any] = []
    for example in doctest.DocTestParser().get_examples(inspect.getdoc(cls) or ""):
        source = example.source.strip()
        tree = ast.parse(source)
        if not tree.body:
            continue
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
            values = [eval(compile(source, f"<{cls.__name__} example>", "eval"), namespace)]  # noqa: S307
        else:
            before = dict(namespace)
            exec(compile(source, f"<{cls.__name__} example>", "exec"), namespace)  # noqa: S102
            values = [v for k, v in namespace.items() if before.get(k) is not v]
        for value in values:
            if isinstance(value, cls):
                steps.append(value)
            elif isinstance(value, pipeline_pkg.Pipeline):
                steps += [node for _, node in value.steps if isinstance(node, cls)]
    return steps


def _yaml_step(step: Any) -> str:
    """The step as a pipeline-file entry, with only the parameters that differ from the defaults."""
    full = step.to_dict()
    shown = {"op": full["op"], **{k: full[k] for k in step.non_default_params()}}
    text = yaml.safe_dump([shown], sort_keys=False, default_flow_style=None, width=100)
    return text.rstrip()


def _op_section(op: str, cls: type) -> list[str]:
    prose, arg_docs = _docstring_parts(cls)
    schema = cls.model_json_schema()
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    out = [f"### `{op}` {{#{op}}}", ""]
    out.append(f"Python class: [`{cls.__module__}.{cls.__name__}`][{cls.__module__}.{cls.__name__}]")
    out.append("")
    if prose:
        out += [prose, ""]
    flags = []
    if cls.wants_continuous:
        flags.append("wants continuous input: `Pipeline.split()` puts it in the **recording part**")
    if cls.training_only:
        flags.append("**training only**: skipped in eval mode")
    if cls.recording_safe is False:
        flags.append("per-window statistics: never runs on whole recordings (window part only)")
    elif not isinstance(cls.recording_safe, bool):
        flags.append("whether it may run on whole recordings depends on its parameters")
    if flags:
        out += [*[f"- {f}" for f in flags], ""]
    if cls.model_fields:
        out += ["| parameter | type | default | constraints | description |", "|---|---|---|---|---|"]
        for name, field in cls.model_fields.items():
            prop = props.get(name, {})
            default = "*required*" if name in required else f"`{json.dumps(prop.get('default'))}`"
            out.append(
                f"| `{name}` | `{_cell(_type_name(field.annotation))}` | {_cell(default)} | "
                f"{_cell(_constraints(prop))} | {_cell(arg_docs.get(name, field.description or ''))} |"
            )
    else:
        out.append("No parameters.")
    steps = _example_steps(cls)
    if steps:
        out += ["", "```yaml", *[_yaml_step(s) for s in steps], "```"]
    elif not required:
        out += ["", "```yaml", _yaml_step(cls()), "```"]
    out.append("")
    return out


def render() -> str:
    """The whole op reference page as Markdown."""
    import neurocrane as crane

    ops = crane.registered_ops()
    lines = [
        "# Pipeline op reference",
        "",
        "<!-- Generated from the registered ops by docs/gen_ops_reference.py on every docs build; do not edit. -->",
        "",
        "Every step of a pipeline file is a mapping with `op` (one of the names below), an optional",
        "`name`, and the op's parameters beside them; omitted parameters take their defaults.",
        "Parameters are in seconds, Hz and millimetres. Steps are validated when the pipeline is",
        "loaded: unknown ops or fields, wrong types and out-of-range values are errors that name the",
        "step and the field. See [Pipelines](../pipelines.md) for the file layout, branches and",
        "nested pipelines.",
        "",
        f"This build knows **{len(ops)} ops** (neurocrane {crane.__version__}):",
        "",
    ]
    by_module: dict[str, list[str]] = {}
    for op, cls in ops.items():
        by_module.setdefault(cls.__module__, []).append(op)
    known = [m for m, _ in SECTIONS]
    sections = list(SECTIONS) + [(m, f"Plugins: `{m}`") for m in sorted(by_module) if m not in known]
    lines += ["| section | ops |", "|---|---|"]
    for module, title in sections:
        if by_module.get(module):
            lines.append(f"| {title} | " + ", ".join(f"[`{op}`](#{op})" for op in by_module[module]) + " |")
    lines.append("")
    for module, title in sections:
        if not by_module.get(module):
            continue
        lines += [f"## {title}", ""]
        for op in by_module[module]:
            lines += _op_section(op, ops[op])
    return "\n".join(lines).rstrip() + "\n"


# -- MkDocs hook ------------------------------------------------------------------------------
def on_files(files: Any, config: Any) -> Any:
    """Add the generated op reference page to the site (MkDocs >= 1.6 hook)."""
    from mkdocs.structure.files import File

    existing = files.get_file_from_path(PAGE_PATH)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, PAGE_PATH, content=render()))
    return files


if __name__ == "__main__":
    page = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
