"""The notebook contract: what every ``notebooks/NAME.py`` must have so that the book can run it.

1. The first code cell is the Colab install cell (:func:`cmmd.book.paths.colab_cell_source`), tagged
   ``remove-cell``;
2. exactly one code cell is tagged ``parameters`` and defines :data:`PARAMETER_NAMES` (papermill
   injects the run's values after it);
3. no markdown cell swallowed a ``# %%`` marker (a jupytext pitfall, see :func:`check_contract`).

:func:`load_notebook` reads a source and checks the contract; :func:`parameterize` adds papermill's
parameters to it; :func:`source_hash` identifies the version of a source that a run executed.
Reading and parameterising need the book's tools (jupytext, papermill), which a chapter never imports.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from cmmd.book.paths import colab_cell_source

#: The parameters every notebook's ``parameters`` cell defines.
PARAMETER_NAMES = ("profile", "device", "seed", "results_path")
#: The Jupyter kernel every notebook runs in.
KERNEL_NAME = "python3"


class NotebookError(RuntimeError):
    """A notebook breaks the book's contract, or one of its cells failed."""


def source_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a notebook source (line endings normalised), hex."""
    data = Path(path).read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()


def load_notebook(path: str | os.PathLike):
    """Read a jupytext percent ``.py`` notebook, check the book's contract, set the kernel.

    Raises:
        NotebookError: the first cell is not :func:`colab_cell_source`, or no cell tagged
            ``parameters`` defines all of :data:`PARAMETER_NAMES`.
    """
    import jupytext

    path = Path(path)
    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    check_contract(nb, path.name)
    return nb


def check_contract(nb, name: str) -> None:
    """Raise :class:`NotebookError` unless ``nb`` starts with the Colab cell and has a parameters cell."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0] if code else None
    if (
        first is None
        or first.source.strip() != colab_cell_source().strip()
        or "remove-cell" not in first.metadata.get("tags", [])
    ):
        raise NotebookError(
            f"{name}: the first code cell must be the Colab install cell, tagged remove-cell:\n\n"
            f'# %% tags=["remove-cell"]\n{colab_cell_source()}\n'
        )
    for cell in nb.cells:
        if cell.cell_type == "markdown" and re.search(r"^(# )?%%( |$)", cell.source, re.MULTILINE):
            raise NotebookError(
                f"{name}: a markdown cell contains a '# %%' cell marker, so jupytext merged the "
                "cells that follow into it; usually a ``` fence whose first line also holds "
                "backticks (e.g. a {cite} role in a directive title): move them to the next line. "
                f"The cell starts: {cell.source[:80]!r}"
            )
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        raise NotebookError(
            f"{name}: needs exactly one code cell tagged parameters (found {len(params)}), e.g.\n"
            '# %% tags=["parameters", "remove-cell"]\n'
            'profile = "cpu"\ndevice = "auto"\nseed = 0\nresults_path = ""'
        )
    defined = set()
    for node in ast.parse(params[0].source).body:
        if isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    missing = [p for p in PARAMETER_NAMES if p not in defined]
    if missing:
        raise NotebookError(f"{name}: the parameters cell does not define {', '.join(missing)}")


def parameterize(nb, parameters: dict[str, Any]):
    """Return a copy of ``nb`` with papermill's ``injected-parameters`` cell for ``parameters``."""
    from papermill.parameterize import parameterize_notebook

    nb = copy.deepcopy(nb)
    nb.metadata.setdefault("papermill", {"parameters": {}})  # as papermill's own loader does
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    return parameterize_notebook(nb, parameters, kernel_name=KERNEL_NAME, language="python")
