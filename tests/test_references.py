"""The repository explains itself: no file points at a document outside it, and every citation of the
book's page "Method and settings" (book/method.md) names a section that exists.

Citations look like ``[method §5]`` in code and docstrings, ``book/method.md, §5`` in the long form a
module docstring uses first, and ``{ref}`method §5 <method-5>``` in Markdown (notebooks, book pages).
The files checked are those git tracks plus the untracked ones it does not ignore, executed notebooks
included, since readers see them too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD_PAGE = ROOT / "book" / "method.md"
TOC = ROOT / "book" / "_toc.yml"
THIS_FILE = Path(__file__).resolve()

#: Names of documents that live outside the repository; a reader who follows them finds nothing.
DEAD_REFERENCES = ("METHOD.md", "NOTES.md", "DESIGN.md", "STYLE.md", "../shared", "seed-summary")

_SECTIONS = r"§\d+(?:(?:,\s*|\s+and\s+)§\d+)*"
#: Each pattern's first group holds one or more "§N" of a citation.
CITATIONS = (
    re.compile(r"\[method\s+(" + _SECTIONS + r")"),  # [method §5], [method §5: σ = 0.01]
    re.compile(r"book/method\.md,\s*(" + _SECTIONS + r")"),  # the long form of a module docstring
)
#: MyST targets of the page's section labels: {ref}`text <method-5>` or {ref}`method-5`.
TARGETS = re.compile(r"<method-(\d+)>|\{ref\}`method-(\d+)`")
LABEL = re.compile(r"^\(method-(\d+)\)=\s*$")


def repository_files() -> list[Path]:
    """Files git tracks, plus untracked files it does not ignore; skips the test without git."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot list the repository's files")
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} has no .git: not a git checkout, so its files cannot be listed")
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=False,
    )
    if listing.returncode != 0:
        pytest.skip(f"git ls-files failed: {listing.stderr.decode(errors='replace').strip()}")
    names = sorted({name for name in listing.stdout.decode().split("\0") if name})
    return [ROOT / name for name in names if (ROOT / name).is_file()]  # a deleted tracked file is gone


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def text_files() -> list[tuple[Path, str]]:
    files = []
    for path in repository_files():
        text = text_of(path)
        if text is not None and path.resolve() != THIS_FILE:
            files.append((path, text))
    return files


def method_labels() -> list[int]:
    """Section numbers of the ``(method-N)=`` labels of book/method.md, in page order."""
    assert METHOD_PAGE.is_file(), "book/method.md (the page 'Method and settings') is missing"
    return [int(m.group(1)) for line in METHOD_PAGE.read_text().splitlines() if (m := LABEL.match(line))]


def test_no_file_points_outside_the_repository():
    found = []
    for path, text in text_files():
        for number, line in enumerate(text.splitlines(), 1):
            for name in DEAD_REFERENCES:
                if name in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {name}: {line.strip()[:120]}")
    assert not found, (
        "these lines name documents that are not in the repository; cite the book's page "
        "'Method and settings' ([method §N] in code, {ref}`method §N <method-N>` in Markdown) or "
        "README.md's 'Architecture' section instead:\n" + "\n".join(found)
    )


def test_method_page_labels_every_section_in_order():
    labels = method_labels()
    assert labels == list(range(1, len(labels) + 1)) and labels, (
        f"book/method.md must label its sections (method-1)= … (method-N)= in order, found {labels}"
    )
    lines = METHOD_PAGE.read_text().splitlines()
    for index, line in enumerate(lines):
        if (m := LABEL.match(line)):
            heading = next((text for text in lines[index + 1:] if text.strip()), "")
            assert re.match(rf"#+\s+{m.group(1)}\.\s", heading), (
                f"the label (method-{m.group(1)})= must stand right before the heading of section "
                f"{m.group(1)}, found {heading!r}"
            )


def test_every_method_citation_names_an_existing_section():
    labels = set(method_labels())
    missing = []
    for path, text in text_files():
        for number, line in enumerate(text.splitlines(), 1):
            cited = [int(n) for pattern in CITATIONS for m in pattern.finditer(line)
                     for n in re.findall(r"§(\d+)", m.group(1))]
            cited += [int(a or b) for a, b in TARGETS.findall(line)]
            missing += [f"{path.relative_to(ROOT)}:{number}: §{n}" for n in cited if n not in labels]
    assert not missing, (
        f"citations of sections that book/method.md does not have (it labels {sorted(labels)}):\n"
        + "\n".join(missing)
    )


def _toc_files(entry: object) -> list[str]:
    if isinstance(entry, dict):
        own = [entry["file"]] if "file" in entry else []
        return own + [f for key in ("parts", "chapters", "sections") for child in entry.get(key, [])
                      for f in _toc_files(child)]
    return []


def test_method_page_is_in_the_table_of_contents():
    yaml = pytest.importorskip("yaml")
    files = _toc_files(yaml.safe_load(TOC.read_text()))
    assert "method" in files, "book/_toc.yml must list the page: '- file: method' in the Reference part"
    assert METHOD_PAGE.is_file()
