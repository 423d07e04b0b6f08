"""The quick-start notebook runs top to bottom (nbclient, a fresh kernel, a temporary working
directory) and shows what it promises: the pipeline's HTML table, two figures, the YAML."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cwd = tmp_path_factory.mktemp("notebook")
    env_before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the kernel inherits the environment
    try:
        client = nbclient.NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        )
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        if env_before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = env_before
    return nb


def _outputs(nb):
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def test_every_cell_ran_without_error(executed):
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count is not None for c in code_cells)
    assert not [o for o in _outputs(executed) if o.output_type == "error"]


def test_pipeline_displays_as_an_html_table(executed):
    html = [o.data["text/html"] for o in _outputs(executed) if "text/html" in o.get("data", {})]
    assert html, "the pipeline cell shows no HTML"
    table = html[0]
    assert 'class="neurocrane-pipeline"' in table and "<table>" in table
    for op in ("car", "notch", "bandpass", "zscore"):
        assert f"<code>{op}</code>" in table


def test_text_description_and_spec_error(executed):
    text = "".join(o.text for o in _outputs(executed) if o.output_type == "stream")
    assert "(1, 48, 2048) 512 Hz [batch x channel x time]" in text  # describe() with concrete shapes
    assert "SpecError:" in text and "Nyquist" in text
    assert "('batch', 'channel', 'freq', 'time')" in text  # axes after the spectrogram
    assert "- op: spectrogram" in text  # the YAML view


def test_two_figures_are_drawn(executed):
    pngs = [o.data["image/png"] for o in _outputs(executed) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2
    for png in pngs:
        raw = base64.b64decode(png)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 10_000  # a real plot, not an empty axes


def test_preprocessed_trace_is_normalized(executed):
    line = next(
        o.text for o in _outputs(executed) if o.output_type == "stream" and "preprocessed std:" in o.text
    )
    raw_std = float(line.split("raw std:")[1].split()[0])
    pre_std = float(line.split("preprocessed std:")[1].split()[0])
    assert raw_std > 5.0  # µV-scale input
    assert pre_std == pytest.approx(1.0, abs=1e-2)  # z-scored output
