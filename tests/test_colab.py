"""A chapter opened in Colab installs what it imports: its install cell plus Colab's preinstalled packages.

For every chapter, the modules it imports, directly or through any ``cmmd`` module it reaches (module-level
and function-level imports alike, followed transitively), must be the standard library, ``cmmd``, one of the
scientific packages Colab ships, or a package that the Colab install cell installs (the core dependencies of
pyproject.toml and its ``colab`` extra).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from cmmd import book

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: The scientific packages preinstalled on Colab that a chapter may import without installing them
#: (import names), plus IPython, whose kernel runs every notebook.
COLAB_PREINSTALLED = {"torch", "numpy", "scipy", "matplotlib", "skimage", "h5py", "pandas", "tqdm", "ipywidgets",
                      "IPython"}


def imported_modules(source: str) -> set[str]:
    """Absolute module names imported anywhere in ``source`` (``import a.b`` → ``a.b``; ``from a import b`` → a, a.b)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def cmmd_file(module: str) -> Path | None:
    """The source file of a ``cmmd`` module (or package ``__init__``), None for names that are not modules."""
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def third_party_imports(source: str) -> set[str]:
    """Top-level names of the non-standard, non-cmmd packages that ``source`` reaches through cmmd."""
    seen, todo, found = set(), list(imported_modules(source)), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        top = module.split(".")[0]
        if top == "cmmd":
            path = cmmd_file(module)
            if path is not None:
                todo.extend(imported_modules(path.read_text()))
                parent = module.rpartition(".")[0]
                if parent:
                    todo.append(parent)  # importing cmmd.a.b runs cmmd/a/__init__.py first
        elif top not in sys.stdlib_module_names and top != "__future__":
            found.add(top)
    return found


def installed_by_colab_cell() -> set[str]:
    """Import names of the distributions the install cell installs: cmmd's dependencies and its colab extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"][book.COLAB_EXTRA]
    distributions = {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower() for req in requirements}
    providers = importlib.metadata.packages_distributions()
    return {name for name, dists in providers.items() if any(d.lower() in distributions for d in dists)}


def test_the_install_cell_installs_the_colab_extra():
    assert f'"cmmd[{book.COLAB_EXTRA}] @ git+{book.REPO_URL}@{book.REPO_BRANCH}"' in book.colab_cell_source()


@pytest.mark.parametrize("name", book.notebook_names(ROOT / "notebooks"))
def test_every_import_of_a_chapter_is_on_colab_or_installed_by_its_first_cell(name):
    nb = book.load_notebook(ROOT / "notebooks" / f"{name}.py")
    source = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code" and not cell.source.startswith("%"))
    missing = third_party_imports(source) - COLAB_PREINSTALLED - installed_by_colab_cell()
    assert not missing, (
        f"{name} imports {sorted(missing)}, which Colab does not ship and its install cell does not install: "
        f"add the distributions to the `{book.COLAB_EXTRA}` extra of pyproject.toml"
    )


def test_the_check_sees_an_import_hidden_behind_cmmd():
    """The scan follows cmmd's modules: chapter 7's CT slices come from pydicom through cmmd.data."""
    assert "pydicom" in third_party_imports("from cmmd.data import ct_slices")
