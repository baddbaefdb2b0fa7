"""The layer rule of README.md's "Architecture" section: a module of cmmd imports only modules of its own
layer or of a lower one, and the chapters import only public modules of cmmd that exist.

Imports are read with ``ast`` from the source (nothing is imported): at any nesting (inside functions,
``if TYPE_CHECKING:``), ``import cmmd.x``, ``from cmmd.x import y`` (``y`` counts as the module
``cmmd.x.y`` when that is a module) and relative imports resolved against the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cmmd"
NOTEBOOKS = ROOT / "notebooks"

#: Layer of every module of cmmd, bottom (0) to top (6). ``"x.*"`` is the package x with all its
#: submodules; any other key is that one module. Edit here when a module is added or moved.
LAYERS: dict[str, int] = {
    # 0: core maths and utilities
    "cmmd._checks": 0,
    "cmmd._sort": 0,
    "cmmd.energy": 0,
    "cmmd.sliced": 0,
    "cmmd.checkpoint": 0,
    "cmmd.distances": 0,  # sample-set distances on top of cmmd.energy
    # 1: forward operators, data, particle flows, projections, metrics, toy problems
    "cmmd.operators.*": 1,
    "cmmd.data.*": 1,
    "cmmd.flow": 1,
    "cmmd.projections": 1,
    "cmmd.metrics": 1,
    "cmmd.statistics": 1,
    "cmmd.toy": 1,
    # 2: the flow specification
    "cmmd.flowspec": 2,
    # 3: networks
    "cmmd.nets": 3,
    "cmmd.convolutional": 3,
    "cmmd.judge": 3,  # the classifier that judges generated images (accuracy, FID features)
    # 4: learned flows
    "cmmd.model": 4,
    "cmmd.pyramid": 4,
    "cmmd.samplers": 4,
    "cmmd.regression": 4,  # the MMSE regressor, the fair baseline of a posterior mean
    "cmmd.distributed": 4,  # training a learned flow on K processes (torch.distributed)
    # 5: the experiments
    "cmmd.experiments.*": 5,
    # 6: the book and the tools; the package's __init__ may re-export from any layer
    "cmmd.book.*": 6,
    "cmmd.runtime": 6,
    "cmmd.bench": 6,
    "cmmd.train": 6,  # python -m cmmd.train: an experiment trained outside the book, on 1 or K processes
    "cmmd": 6,
    "cmmd.__main__": 6,
}


def module_files() -> dict[str, Path]:
    """Module name → source file for every module of the package (a package is its __init__.py)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> int | None:
    """The layer of ``module`` from :data:`LAYERS` (the most specific entry), or None if it has none."""
    if module in LAYERS:
        return LAYERS[module]
    best = None
    for key, layer in LAYERS.items():
        if key.endswith(".*"):
            prefix = key[:-2]
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return None if best is None else best[1]


def imports_of(path: Path, module: str, modules: dict[str, Path]) -> list[tuple[int, str, str]]:
    """(line, imported cmmd module, imported name or "") of every import of cmmd in one file.

    ``from P import n`` yields the module P.n when it is a module of cmmd, else P with the name n.
    """
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "") for alias in node.names
                      if alias.name == "cmmd" or alias.name.startswith("cmmd.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != "cmmd" and not source.startswith("cmmd."):
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}"
                found.append((node.lineno, child, "") if child in modules else (node.lineno, source, alias.name))
    return found


def test_every_module_has_a_layer():
    missing = [name for name in module_files() if layer_of(name) is None]
    assert not missing, "\n".join(f"add {name} to the layer table in tests/test_layers.py" for name in missing)


def test_no_module_imports_a_higher_layer():
    modules = module_files()
    violations = []
    for name, path in modules.items():
        own = layer_of(name)
        if own is None or name == "cmmd":  # unplaced: the test above reports it; the root re-exports anything
            continue
        for line, target, symbol in imports_of(path, name, modules):
            if target == "cmmd" and not symbol:
                continue  # importing any submodule imports the root package first: not a dependency
            layer = layer_of(target)
            if layer is not None and layer > own:
                what = f"{target}.{symbol}" if symbol else target
                violations.append(f"{path.relative_to(ROOT)}:{line}: {name} (layer {own}) imports {what} "
                                  f"(layer {layer})")
    assert not violations, ("a module may import only its own layer or lower (README.md, 'Architecture'); "
                            "move the code down or the import up:\n" + "\n".join(violations))


def test_relative_imports_are_resolved(tmp_path):
    """A guard for the resolution itself, on a submodule written for the purpose."""
    modules = {"cmmd.experiments": Path("a"), "cmmd.experiments.spec": Path("b"), "cmmd.flow": Path("c")}
    tasks = tmp_path / "tasks.py"
    tasks.write_text("from .spec import Spec\nfrom . import spec\n\ndef f():\n    from ..flow import mmd_flow\n")
    got = sorted(imports_of(tasks, "cmmd.experiments.tasks", modules))
    assert got == [(1, "cmmd.experiments.spec", "Spec"), (2, "cmmd.experiments.spec", ""), (5, "cmmd.flow", "mmd_flow")]
    package = tmp_path / "__init__.py"
    package.write_text("from .spec import Spec\nfrom cmmd import flow, mmd2\n")
    got = sorted(imports_of(package, "cmmd.experiments", modules))
    assert got == [(1, "cmmd.experiments.spec", "Spec"), (2, "cmmd", "mmd2"), (2, "cmmd.flow", "")]


def defined_names(path: Path) -> set[str]:
    """Names bound at the top level of a module (also inside top-level if/try blocks)."""
    names: set[str] = set()
    body = list(ast.parse(path.read_text(), filename=str(path)).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try)):
            body += node.body + node.orelse + getattr(node, "finalbody", [])
            body += [stmt for handler in getattr(node, "handlers", []) for stmt in handler.body]
    return names


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.py")), ids=lambda p: p.stem)
def test_notebook_imports_public_modules_that_exist(notebook):
    modules = module_files()
    problems = []
    for line, target, symbol in imports_of(notebook, "__notebook__", modules):
        where = f"{notebook.relative_to(ROOT)}:{line}"
        if target not in modules:
            problems.append(f"{where}: {target} is not a module of cmmd")
        elif any(part.startswith("_") for part in target.split(".")):
            problems.append(f"{where}: {target} is private; import from a public module")
        elif symbol == "*":
            problems.append(f"{where}: 'from {target} import *' hides what the chapter uses")
        elif symbol and symbol.startswith("_"):
            problems.append(f"{where}: {target}.{symbol} is private")
        elif symbol and symbol not in defined_names(modules[target]):
            problems.append(f"{where}: {target} defines no {symbol}")
    problems = list(dict.fromkeys(problems))  # one line per import statement and module
    assert not problems, "\n".join(problems)
