"""Griffe extension for the API pages: render ``Example:`` sections as examples.

neurocrane's docstrings head their doctest snippets ``Example:``; Griffe's Google-style parser
reads only the plural ``Examples:`` as an examples section (``>>>`` lines shown as code) and
turns the singular into a plain admonition. This renames the header before parsing.
Loaded by ``mkdocs.yml`` (``extensions: [docs/griffe_examples.py]``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADER = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class SingularExampleSections(griffe.Extension):
    """Rename ``Example:`` section headers to ``Examples:`` in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _HEADER.sub(r"\1Examples:", docstring.value)
