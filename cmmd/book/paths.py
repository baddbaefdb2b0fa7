"""Where the book lives: the repository's folders, its public URL and branch, and the Colab cell built from them.

``notebooks/NAME.py`` are the chapter sources, ``book/generated/`` receives what ``python -m cmmd.book``
makes of them. The Colab install cell, the book's repository button (``_config.yml``) and the Colab link
of every page all name the same repository and branch: :data:`REPO_URL` and :data:`REPO_BRANCH`.
"""

from __future__ import annotations

from pathlib import Path

#: The public repository: the Colab install cell, the book's repository button and Colab links
#: all use this URL (``_config.yml`` repeats it; ``tests/test_book.py`` checks that they agree).
REPO_URL = "https://github.com/cmmd-companion/cmmd"
#: The extra of pyproject.toml that the Colab install cell asks for: what the chapters import beyond
#: Colab's preinstalled packages (tests/test_colab.py checks it covers every import of every chapter).
COLAB_EXTRA = "colab"
#: The branch the online book and its Colab links are built from.
REPO_BRANCH = "main"


def _default_root() -> Path:
    """The repository root: the folder holding ``notebooks/`` and ``book/`` (else the working directory)."""
    here = Path(__file__).resolve().parents[2]
    if (here / "notebooks").is_dir() and (here / "book").is_dir():
        return here
    return Path.cwd()


ROOT = _default_root()
NOTEBOOKS_DIR = ROOT / "notebooks"
GENERATED_DIR = ROOT / "book" / "generated"


def colab_cell_source() -> str:
    """The first cell of every notebook: installs ``cmmd`` when run in Colab (hidden in the book).

    The package is installed from the branch the book is built from, so the notebook (committed on
    that branch) and the library it imports come from the same commit history.
    """
    return (
        "# Colab only: install cmmd with what the chapters import (hidden in the book; does nothing elsewhere).\n"
        "# Long runs on Colab: keep the checkpoints on Google Drive, so that a disconnect loses nothing:\n"
        "#     from google.colab import drive\n"
        '#     drive.mount("/content/drive")\n'
        '# then set checkpoint_dir = "/content/drive/MyDrive/cmmd-checkpoints" in the parameters cell below and,\n'
        "# after a disconnect, run all cells again: every fit continues from its last finished network.\n"
        "import importlib\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    PACKAGE = "cmmd[{COLAB_EXTRA}] @ git+{REPO_URL}@{REPO_BRANCH}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)\n'
        "    importlib.invalidate_caches()"
    )


def colab_url(name: str) -> str:
    """The Colab link of the executed notebook ``book/generated/NAME.ipynb`` on :data:`REPO_BRANCH`."""
    slug = REPO_URL.removeprefix("https://github.com/")
    return (
        f"https://colab.research.google.com/github/{slug}/blob/{REPO_BRANCH}"
        f"/book/generated/{name}.ipynb"
    )


def relative(path: Path) -> str:
    """``path`` relative to :data:`ROOT` where it lies below it (as the run records show it), else unchanged."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
