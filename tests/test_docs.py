"""The documentation is tested: the site builds with ``mkdocs build --strict``, the op reference
matches the registry, and the Python code blocks of README.md and docs/*.md run.

Convention for code blocks in Markdown files (README.md and every docs/*.md):

* A fenced block tagged ``python`` runs. The blocks of one file run **in order, in one
  namespace**, in a fresh temporary working directory (``pipelines/`` of the repository is
  linked into it, as in a clone), with ``HF_HUB_OFFLINE=1`` and matplotlib's ``Agg`` backend.
  Each file runs in its own Python process, so registrations (custom ops, models) do not leak.
* Blocks tagged anything else (``bash``, ``yaml``, ``text``, no tag) are shown, never run.
* A ``python`` block directly preceded by an HTML comment ``<!-- skip: why -->`` is not run:
  use it for snippets that need what tests do not have (a Hub push, your own EDF files, a GPU,
  pseudo-code with ``...`` placeholders). Say why in the comment.
* An HTML comment opening with ``<!-- setup`` holds Python that runs at that point but is not
  rendered: preparation the reader does not need to see (e.g. writing a demo file).

Shell blocks of README.md and the getting-started page are not run (they install packages or
are the test suite itself); a test checks that the make targets, pip extras, CLI subcommands
and Hydra config options they name exist.

Run one file by hand: ``python -m tests.test_docs docs/pipelines.md``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FILE_TIMEOUT_S = 300

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
_SKIP = re.compile(r"^\s*<!--\s*skip\b.*-->\s*$")
_SETUP_OPEN = re.compile(r"^\s*<!--\s*setup\b(?P<rest>.*)$")


@dataclass
class Block:
    """One piece of Python to run: the source and the 1-based line of its first line."""

    code: str
    line: int
    kind: str  # "python" or "setup"


def extract_blocks(text: str) -> tuple[list[Block], int]:
    """Python blocks to run, in order, and the number of python blocks skipped on purpose."""
    lines = text.splitlines()
    blocks: list[Block] = []
    skipped = 0
    i = 0
    previous_nonblank = ""
    while i < len(lines):
        line = lines[i]
        setup = _SETUP_OPEN.match(line)
        if setup:
            body, j = [], i + 1
            rest = setup.group("rest")
            if "-->" in rest:
                raise ValueError(f"line {i + 1}: a setup comment needs its code on the following lines")
            while j < len(lines) and "-->" not in lines[j]:
                body.append(lines[j])
                j += 1
            if j == len(lines):
                raise ValueError(f"line {i + 1}: setup comment is never closed with -->")
            blocks.append(Block(textwrap.dedent("\n".join(body)), i + 2, "setup"))
            i = j + 1
            previous_nonblank = ""
            continue
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group("fence")
            info = fence.group("info").lower()
            body, j = [], i + 1
            close = re.compile(rf"^ *{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            while j < len(lines) and not close.match(lines[j]):
                body.append(lines[j])
                j += 1
            if info == "python":
                if _SKIP.match(previous_nonblank):
                    skipped += 1
                else:
                    indent = len(fence.group("indent"))
                    code = "\n".join(b[indent:] if b[:indent].isspace() else b for b in body)
                    blocks.append(Block(code, i + 2, "python"))
            i = j + 1
            previous_nonblank = ""
            continue
        if line.strip():
            previous_nonblank = line
        i += 1
    return blocks, skipped


def run_file(path: Path) -> None:
    """Execute the blocks of one Markdown file (in this process, in a temporary directory)."""
    blocks, _ = extract_blocks(path.read_text(encoding="utf-8"))
    namespace: dict = {"__name__": "__main__"}
    with tempfile.TemporaryDirectory(prefix="neurocrane-docs-") as tmp:
        os.chdir(tmp)
        os.symlink(ROOT / "pipelines", Path(tmp) / "pipelines")
        for n, block in enumerate(blocks, 1):
            try:
                # Pad with newlines so tracebacks point at the line in the Markdown file.
                code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
                exec(code, namespace)  # noqa: S102
            except BaseException:
                print(f"\n{path.name}: {block.kind} block {n} of {len(blocks)} (line {block.line}) failed:\n", file=sys.stderr)
                traceback.print_exc()
                raise SystemExit(1) from None
        os.chdir(ROOT)


def _run_in_subprocess(path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "NO_MKDOCS_2_WARNING": "1",
    }
    env.pop("NEUROCRANE_DATA_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", "tests.test_docs", str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=FILE_TIMEOUT_S,
    )


# -- the convention itself ------------------------------------------------------------------
SAMPLE = """\
# Title

```python
a = 1
```

```bash
exit 1
```

<!-- skip: needs the network -->
```python
raise RuntimeError("never runs")
```

<!-- setup
b = a + 1
-->

- item

    ```python
    c = b + 1
    ```

````python
d = c + 1
````

```
plain
```
"""


def test_extract_blocks_follows_the_convention():
    blocks, skipped = extract_blocks(SAMPLE)
    assert [b.kind for b in blocks] == ["python", "setup", "python", "python"]
    assert [b.code.strip() for b in blocks] == ["a = 1", "b = a + 1", "c = b + 1", "d = c + 1"]
    assert skipped == 1
    assert [b.line for b in blocks] == [4, 17, 23, 27]  # first line of each block's code
    namespace: dict = {}
    for b in blocks:
        exec(b.code, namespace)  # noqa: S102
    assert namespace["d"] == 4


def test_a_failing_block_fails_and_names_its_line(tmp_path):
    doc = tmp_path / "broken.md"
    doc.write_text("# Broken\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2, 'wrong'\n```\n")
    result = _run_in_subprocess(doc)
    assert result.returncode != 0
    assert "python block 2 of 2 (line 10) failed" in result.stderr
    assert "AssertionError: wrong" in result.stderr and "broken.md" in result.stderr


# -- the real files ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in DOC_FILES])
def test_code_blocks_run(path):
    result = _run_in_subprocess(path)
    assert result.returncode == 0, f"{path.relative_to(ROOT)}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


def test_readme_and_getting_started_have_code_that_runs():
    for name, minimum in (("README.md", 1), ("docs/getting-started.md", 5)):
        blocks, _ = extract_blocks((ROOT / name).read_text(encoding="utf-8"))
        assert len([b for b in blocks if b.kind == "python"]) >= minimum, name
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.parametrize("name", ["README.md", "docs/getting-started.md"])
def test_shell_commands_refer_to_things_that_exist(name):
    """Shell blocks are not run (they install packages or are the test suite itself), so check
    what they name instead: make targets, pip extras, CLI subcommands and Hydra config options."""
    import tomllib

    from neurocrane.cli import COMMANDS

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    conf = ROOT / "neurocrane" / "conf"
    checked = 0
    for block in _shell_blocks((ROOT / name).read_text(encoding="utf-8")):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            for target in re.findall(r"^make (\w+)", command):
                assert re.search(rf"^{target}:", makefile, flags=re.M), f"{name}: no make target {target!r}"
                checked += 1
            for extra in re.findall(r'pip install -e "\.\[(\w+)\]"', command):
                assert extra in extras, f"{name}: no extra {extra!r} in pyproject.toml"
                checked += 1
            if command.startswith("neurocrane "):
                assert command.split()[1] in COMMANDS, f"{name}: no subcommand in {command!r}"
                checked += 1
                for group, option in re.findall(r"\b(\w+)=(\w+)\b", command):
                    if (conf / group).is_dir():
                        assert (conf / group / f"{option}.yaml").is_file(), f"{name}: no config {group}={option}"
                        checked += 1
    assert checked >= 5


# -- the site ---------------------------------------------------------------------------------
def test_ops_reference_lists_every_registered_op_and_field():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_ops_reference
    finally:
        sys.path.remove(str(ROOT / "docs"))
    import neurocrane as crane

    page = gen_ops_reference.render()
    for op, cls in crane.registered_ops().items():
        section = page.split(f"### `{op}` {{#{op}}}", 1)
        assert len(section) == 2, f"op {op!r} missing from the reference"
        body = section[1].split("\n### ", 1)[0]
        for name, field in cls.model_fields.items():
            row = next((r for r in body.splitlines() if r.startswith(f"| `{name}` |")), None)
            assert row is not None, f"{op}.{name} missing"
            assert ("*required*" in row) == field.is_required(), row
    # defaults and constraints come from the schema, examples from the docstrings
    bandpass = page.split("### `bandpass`", 1)[1].split("\n### ", 1)[0]
    assert "| `order` | `int` | `4` | ≥ 1, ≤ 20 |" in bandpass
    assert "- {op: bandpass, phase: causal, low: 70.0, high: 250.0, order: 5}" in bandpass
    assert "recording part" in bandpass  # wants_continuous flag


def test_ops_reference_follows_a_new_op():
    from typing import ClassVar

    import pydantic

    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_ops_reference
    finally:
        sys.path.remove(str(ROOT / "docs"))
    from neurocrane.pipeline import Transform, unregister_transform

    class DocsProbe(Transform):
        """A probe op.

        Args:
            gain: How much.

        Example:
            >>> DocsProbe(gain=3.0)
        """

        op: ClassVar[str] = "docs_test.probe"
        gain: float = pydantic.Field(default=1.0, gt=0, le=10)

    try:
        page = gen_ops_reference.render()
    finally:
        unregister_transform("docs_test.probe")
    assert "### `docs_test.probe`" in page
    assert "| `gain` | `float` | `1.0` | > 0, ≤ 10 | How much. |" in page
    assert "- {op: docs_test.probe, gain: 3.0}" in page
    assert "docs_test.probe" not in gen_ops_reference.render()


def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=FILE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    ops_html = (site / "reference" / "ops" / "index.html").read_text(encoding="utf-8")
    assert 'id="bandpass"' in ops_html and 'id="spectrogram"' in ops_html
    core = (site / "api" / "core" / "index.html").read_text(encoding="utf-8")
    assert "neurocrane.pipeline.pipeline.Pipeline" in core and "fingerprint" in core
    assert (site / "notebooks" / "quickstart.ipynb").is_file()
    assert (site / "getting-started" / "index.html").is_file()


if __name__ == "__main__":
    run_file(Path(sys.argv[1]).resolve())
