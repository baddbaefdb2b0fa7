"""The book: the chapter kit the notebooks use, and the runner that executes them into ``book/generated/``.

``python -m cmmd.book [--profile smoke|cpu|paper] [NAME ...]`` runs the chapters (:mod:`cmmd.book.__main__`).
One concept per module:

- :mod:`~cmmd.book.paths`: where the book lives (folders, repository URL and branch, the Colab cell);
- :mod:`~cmmd.book.contract`: what a notebook source must have (Colab cell, parameters cell);
- :mod:`~cmmd.book.results`: a chapter's results file (ledger rows, metrics), validated;
- :mod:`~cmmd.book.pages`: the ledger and runs pages rendered from the run records;
- :mod:`~cmmd.book.runner`: executing a notebook, staleness, refreshing the prose;
- :mod:`~cmmd.book.kit`: what every chapter does before, around and after its experiments (:class:`Chapter`).

A chapter imports the kit and nothing of the runner, so it runs in Colab without the book's build tools
(jupytext, papermill, nbformat). This package therefore imports only the standard-library modules at once
(paths, results, pages); the names of the kit, the contract, the runner and the command line are loaded
from their modules on first use (``cmmd.book.run_notebook`` imports :mod:`cmmd.book.runner`).
"""

from __future__ import annotations

from importlib import import_module

from cmmd.book.pages import (
    footer_run_time, format_number, ledger_status, read_records, render_ledger, render_runs, write_ledger_pages,
)
from cmmd.book.paths import (
    COLAB_EXTRA, GENERATED_DIR, NOTEBOOKS_DIR, REPO_BRANCH, REPO_URL, ROOT, colab_cell_source, colab_url,
)
from cmmd.book.results import LEDGER_KEYS, validate_ledger, validate_metrics, write_results

#: Module → the public names this package re-exports from it on first use.
_LAZY = {
    "kit": ("Chapter", "book_figure_style", "checkpoint_folder", "estimate_fit_seconds", "fit_or_resume",
            "fit_summary", "has_checkpoint", "history_table", "ledger_text", "load_splits"),
    "contract": ("KERNEL_NAME", "PARAMETER_NAMES", "NotebookError", "check_contract", "load_notebook",
                 "parameterize", "source_hash"),
    "runner": ("DEFAULT_PROFILE", "RunOutcome", "notebook_names", "refresh_text", "resolve_names", "run_notebook",
               "stale_reasons"),
    "__main__": ("main",),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    """Load a re-exported name of :data:`_LAZY` from its module."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "COLAB_EXTRA", "GENERATED_DIR", "LEDGER_KEYS", "NOTEBOOKS_DIR", "REPO_BRANCH", "REPO_URL", "ROOT",
    "colab_cell_source", "colab_url", "footer_run_time", "format_number", "ledger_status", "read_records",
    "render_ledger", "render_runs", "validate_ledger", "validate_metrics", "write_ledger_pages", "write_results",
    *_WHERE,
]
