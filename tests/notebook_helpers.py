"""Tiny papermill notebooks for the study and executor tests."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """Write a Python notebook at ``path``: a cell tagged ``parameters`` with ``parameters``, then ``cells``."""
    nb = new_notebook()
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path
