"""Execute the book's notebooks: ``python -m cmmd.book [--profile smoke|cpu|paper] [NAME ...]``.

Pipeline (``DESIGN.md``, Pipeline)::

    notebooks/NAME.py --jupytext--> papermill (profile, device, seed, results_path)
        --> book/generated/NAME.ipynb   executed notebook, run record in metadata["cmmd"]
        --> book/generated/NAME.json    run record + the chapter's ledger rows and metrics
        --> book/generated/ledger.md, runs.md   tables that book/intro.md includes

A notebook runs into a temporary file that replaces the old one only on success; a failing cell
stops the run and names the cell, the error and the partial notebook. A notebook whose source hash
and parameters match its executed copy is skipped (``--force`` reruns it). After an edit of the prose
only, ``--refresh-text`` copies the markdown into the executed notebook without running it
(:func:`refresh_text`; it refuses when any code cell changed).

Inside a notebook, :func:`write_results` stores the chapter's headline figures; it is a no-op
(with a warning) when the notebook runs on its own, e.g. in Colab.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from cmmd.results import (  # noqa: F401  (re-exported: the book's API)
    LEDGER_KEYS, _atomic_write_text, validate_ledger, validate_metrics, write_results,
)
from cmmd.runtime import PROFILES, check_profile, hardware_summary, resolve_device, versions

#: The public repository: the Colab install cell, the book's repository button and Colab links
#: all use this URL (``_config.yml`` repeats it; ``tests/test_book.py`` checks that they agree).
REPO_URL = "https://github.com/cmmd-companion/cmmd"
#: The extra of pyproject.toml that the Colab install cell asks for: what the chapters import beyond
#: Colab's preinstalled packages (tests/test_colab.py checks it covers every import of every chapter).
COLAB_EXTRA = "colab"
#: The branch the online book and its Colab links are built from.
REPO_BRANCH = "main"

#: The profile of the committed book (``make book``).
DEFAULT_PROFILE = "cpu"
#: The parameters every notebook's ``parameters`` cell defines.
PARAMETER_NAMES = ("profile", "device", "seed", "results_path")
KERNEL_NAME = "python3"



def _default_root() -> Path:
    """The repository root: the folder holding ``notebooks/`` and ``book/``."""
    here = Path(__file__).resolve().parents[1]
    if (here / "notebooks").is_dir() and (here / "book").is_dir():
        return here
    return Path.cwd()


ROOT = _default_root()
NOTEBOOKS_DIR = ROOT / "notebooks"
GENERATED_DIR = ROOT / "book" / "generated"


# --------------------------------------------------------------------------- the notebook contract


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
    import copy

    from papermill.parameterize import parameterize_notebook

    nb = copy.deepcopy(nb)
    nb.metadata.setdefault("papermill", {"parameters": {}})  # as papermill's own loader does
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    return parameterize_notebook(nb, parameters, kernel_name=KERNEL_NAME, language="python")


# --------------------------------------------------------------------------- the ledger pages


def ledger_status(row: dict) -> str:
    """A short verdict for one ledger row: against the paper's number (agreement: within 10%)
    and against the baseline; ``measured`` when there is neither."""
    sign = 1.0 if row["higher_is_better"] else -1.0
    parts = []
    if row["paper"] is not None:
        paper, ours = row["paper"], row["ours"]
        if abs(ours - paper) <= 0.1 * abs(paper) or (paper == 0 and abs(ours) < 1e-12):
            parts.append("agrees with paper")
        elif sign * (ours - paper) > 0:
            parts.append("better than paper")
        else:
            parts.append("worse than paper")
    if row["baseline"] is not None:
        name, value = row["baseline"]["name"], row["baseline"]["value"]
        parts.append(f"beats {name}" if sign * (row["ours"] - value) > 0 else f"behind {name}")
    return "; ".join(parts) or "measured"


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.2e}"


def _chapter_link(name: str, text: str) -> str:
    return f"{{doc}}`{text} </generated/{name}>`"


def _chapter_number(name: str) -> str:
    number = name.split("_", 1)[0]
    return str(int(number)) if number.isdigit() else name


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def read_records(generated_dir: str | os.PathLike = GENERATED_DIR) -> list[dict]:
    """The JSON run records in ``generated_dir``, sorted by notebook name.

    A file that is not valid JSON is left out with a warning that names it and says what to do, so that
    one stray file does not stop every runner command.
    """
    records = []
    for path in sorted(Path(generated_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            warnings.warn(f"{path} is not readable JSON ({error}); it is left out of the ledger and runs pages. "
                          f"Delete it, or rerun its notebook: python -m cmmd.book --force NAME", stacklevel=2)
            continue
        if isinstance(data, dict) and "ledger" in data and "notebook" in data:
            records.append(data)
    return records


def render_ledger(records: Sequence[dict]) -> str:
    """MyST table of every chapter's ledger rows (``book/generated/ledger.md``)."""
    rows = [(record["notebook"], row) for record in records for row in record["ledger"]]
    if not rows:
        return "No chapter has recorded results yet: run `make book`.\n"
    with_baseline = any(row["baseline"] for _, row in rows)
    head = ["Experiment (chapter)", "Metric", "Ours", "Paper"]
    align = ["---", "---", "---:", "---:"]
    if with_baseline:
        head.append("Baseline")
        align.append("---")
    head += ["Profile", "Status"]
    align += ["---", "---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for name, row in rows:
        arrow = "↑" if row["higher_is_better"] else "↓"
        cells = [
            _chapter_link(name, f"{row['experiment']} ({_chapter_number(name)})"),
            f"{row['metric']} {arrow}",
            _fmt(row["ours"]),
            _fmt(row["paper"]),
        ]
        if with_baseline:
            base = row["baseline"]
            cells.append(_cell(f"{base['name']}: {_fmt(base['value'])}") if base else "—")
        cells += [f"`{row['profile']}`", _cell(ledger_status(row))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_runs(records: Sequence[dict]) -> str:
    """MyST table of how each chapter was produced (``book/generated/runs.md``)."""
    if not records:
        return "No chapter has been executed yet: run `make book`.\n"
    profiles = sorted({r["profile"] for r in records})
    if len(profiles) == 1:
        head = f"Every chapter of this copy was executed with profile `{profiles[0]}`.\n\n"
    else:
        head = f"The chapters of this copy were executed with profiles {', '.join(profiles)}.\n\n"
    lines = [
        "| Chapter | Profile | Hardware | Run time | Executed | Source |",
        "|---|---|---|---:|---|---|",
    ]
    from cmmd.runtime import format_duration

    for r in records:
        executed = r["executed_at"][:10]
        if r.get("text_refreshed_at"):  # prose edited after the run (python -m cmmd.book NAME --refresh-text)
            executed += f", text {r['text_refreshed_at'][:10]}"
        # The chapter's footer figure (from its first computation) where known, so that the table
        # and the footer agree; papermill's wall time also counts the kernel start and the imports.
        run_time = r.get("footer_run_time") or format_duration(r["wall_time_s"])
        lines.append(
            f"| {_chapter_link(r['notebook'], _chapter_number(r['notebook']))} | `{r['profile']}` | "
            f"{_cell(r['hardware'])} | "
            f"{_cell(run_time)} | {executed} | "
            f"`{r['source']}` ({r['source_hash'][:8]}) |"
        )
    return head + "\n".join(lines) + "\n"


_FOOTER_TOTAL = re.compile(r"^Run time\n\s*Total: (.+)$", re.MULTILINE)


def footer_run_time(notebook: str | os.PathLike) -> str | None:
    """The run time that the footer of an executed notebook shows (``"32.4 s"``), or None.

    The footer is :func:`cmmd.runtime.footer`'s display output; its plain-text form reads
    ``Run time`` / ``  Total: 32.4 s`` / ``  Hardware: ...``.
    """
    try:
        with open(notebook, encoding="utf-8") as f:
            cells = json.load(f).get("cells", [])
    except (OSError, ValueError):
        return None
    found = None
    for cell in cells:
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            text = output.get("data", {}).get("text/plain", "")
            match = _FOOTER_TOTAL.match("".join(text) if isinstance(text, list) else text)
            if match:
                found = match.group(1).strip()
    return found


def write_ledger_pages(generated_dir: str | os.PathLike = GENERATED_DIR) -> None:
    """(Re)write ``ledger.md`` and ``runs.md`` from the JSON records in ``generated_dir``.

    The runs table shows each chapter's run time as its footer does (:func:`footer_run_time`).
    """
    generated_dir = Path(generated_dir)
    records = read_records(generated_dir)
    for record in records:
        shown = footer_run_time(generated_dir / f"{record['notebook']}.ipynb")
        if shown:
            record["footer_run_time"] = shown
    _atomic_write_text(generated_dir / "ledger.md", render_ledger(records))
    _atomic_write_text(generated_dir / "runs.md", render_runs(records))


# --------------------------------------------------------------------------- running notebooks


def notebook_names(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[str]:
    """Names (file stems) of the notebook sources ``notebooks/*.py``, sorted."""
    return sorted(p.stem for p in Path(notebooks_dir).glob("*.py") if not p.name.startswith("_"))


def resolve_names(requested: Sequence[str], notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[str]:
    """Map ``01``, ``01_sliced_mmd`` or ``notebooks/01_sliced_mmd.py`` to notebook names."""
    available = notebook_names(notebooks_dir)
    if not requested:
        return available
    out = []
    for item in requested:
        stem = Path(item).stem
        matches = [n for n in available if n == stem] or [n for n in available if n.startswith(stem)]
        if len(matches) != 1:
            what = "matches several notebooks" if matches else "is not a notebook"
            raise NotebookError(f"{item!r} {what}; available: {', '.join(available) or 'none'}")
        out.append(matches[0])
    return out


def _read_metadata(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("metadata", {}).get("cmmd")
    except (OSError, ValueError):
        return None


def stale_reasons(
    name: str,
    *,
    profile: str = DEFAULT_PROFILE,
    notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
    generated_dir: str | os.PathLike = GENERATED_DIR,
) -> list[str]:
    """Why ``book/generated/NAME.ipynb`` does not match its source and ``profile`` (empty: current)."""
    src = Path(notebooks_dir) / f"{name}.py"
    nb_path = Path(generated_dir) / f"{name}.ipynb"
    json_path = Path(generated_dir) / f"{name}.json"
    meta = _read_metadata(nb_path)
    if meta is None:
        return [f"{nb_path} is missing or has no run record"]
    reasons = []
    if meta.get("profile") != profile:
        reasons.append(f"{nb_path.name} was produced by profile {meta.get('profile')!r}, not {profile!r}")
    current = source_hash(src)
    if meta.get("source_hash") != current:
        reasons.append(f"{nb_path.name} was executed from another version of {src.name}")
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        reasons.append(f"{json_path.name} is missing or unreadable")
    else:
        if record.get("source_hash") != current or record.get("profile") != meta.get("profile"):
            reasons.append(f"{json_path.name} does not belong to {nb_path.name}")
    return reasons


@dataclass
class RunOutcome:
    name: str
    status: str  # "ran" or "skipped"
    notebook: Path
    wall_time_s: float | None = None


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _rewrite_parameters(source: str, params: dict[str, Any]) -> str:
    """The parameters cell as a run with ``params`` leaves it: each value written in, ``results_path`` empty."""
    for key, value in {**params, "results_path": ""}.items():
        source = re.sub(rf"^{key}\s*=.*$", f"{key} = {json.dumps(value)}", source, flags=re.MULTILINE)
    return source


def _tidy_executed(nb, params: dict[str, Any], source: Path, output: Path) -> None:
    """Make the executed notebook rerunnable as it is, e.g. in Colab.

    papermill's ``injected-parameters`` cell (which would silently override any edit of the
    parameters cell) is dropped, and the ``parameters`` cell is rewritten to the values this run
    used, with an empty ``results_path``. papermill's metadata keeps the record of the run.
    """
    kept = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            continue
        if "parameters" in tags:
            cell.source = _rewrite_parameters(cell.source, params)
        kept.append(cell)
    nb.cells = kept
    pm = nb.metadata.get("papermill", {})
    if "parameters" in pm:
        pm["parameters"]["results_path"] = ""
    pm["input_path"] = _relative(source)
    pm["output_path"] = _relative(output)


def _source_cell(nb, executed_index: int) -> int:
    """The index in the source notebook ``nb`` of cell ``executed_index`` of its papermill run, which holds
    one more cell (``injected-parameters``, right after the ``parameters`` cell)."""
    tags = [cell.metadata.get("tags", []) for cell in nb.cells]
    params = next((i for i, t in enumerate(tags) if "parameters" in t), None)
    return executed_index - 1 if params is not None and executed_index > params else executed_index


def _source_line(src: Path, cell_source: str) -> str:
    """``", line N"``: where the first line of a failing cell's code stands in ``src``, or ``""`` if not found."""
    first = next((line for line in cell_source.splitlines() if line.strip()), None)
    try:
        lines = src.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    number = next((k for k, line in enumerate(lines, 1) if first is not None and line == first), None)
    return f", line {number}" if number is not None else ""


def run_notebook(
    name: str,
    *,
    profile: str = DEFAULT_PROFILE,
    device: str = "auto",
    seed: int = 0,
    force: bool = False,
    notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
    generated_dir: str | os.PathLike = GENERATED_DIR,
    log: Callable[[str], None] = print,
) -> RunOutcome:
    """Execute ``notebooks/NAME.py`` into ``generated_dir/NAME.ipynb`` and ``NAME.json``.

    Skipped when the executed copy has the same source hash and parameters (unless ``force``).

    Raises:
        NotebookError: the notebook breaks the contract or a cell fails; the message names the
            cell, the error and the partial notebook left at ``generated_dir/NAME.tmp.ipynb``.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    check_profile(profile)
    resolved = resolve_device(device)
    src = Path(notebooks_dir) / f"{name}.py"
    generated_dir = Path(generated_dir)
    out_nb, out_json = generated_dir / f"{name}.ipynb", generated_dir / f"{name}.json"
    params = {"profile": profile, "device": device, "seed": int(seed)}
    digest = source_hash(src)

    meta = _read_metadata(out_nb)
    if (
        not force
        and meta is not None
        and meta.get("source_hash") == digest
        and meta.get("parameters") == params
        and out_json.exists()
    ):
        log(f"{name}: up to date (profile {profile}), skipped; --force reruns it")
        return RunOutcome(name, "skipped", out_nb)

    nb = load_notebook(src)
    # On a shared CPU, OpenMP threads that spin while they wait make small tensor operations up to
    # 10x slower; passive waiting costs nothing measurable otherwise. The kernel inherits this.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    generated_dir.mkdir(parents=True, exist_ok=True)
    partial = generated_dir / f"{name}.tmp.ipynb"
    log(f"{name}: running with profile {profile} on {resolved} ...")
    with tempfile.TemporaryDirectory(prefix="cmmd-book-") as tmp:
        results_path = Path(tmp) / f"{name}.results.json"
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                nb,
                str(partial),
                parameters={**params, "results_path": str(results_path)},
                kernel_name=KERNEL_NAME,
                language="python",
                progress_bar=sys.stderr.isatty(),
                cwd=str(Path(notebooks_dir)),
            )
        except PapermillExecutionError as err:
            source = "\n".join("    " + line for line in err.source.splitlines()[:15])
            raise NotebookError(
                f"{name}: cell {_source_cell(nb, err.cell_index)} of {_relative(src)} (0-based, markdown cells "
                f"counted{_source_line(src, err.source)}) failed:\n"
                f"{source}\n{err.ename}: {err.evalue}\n"
                f"Partial notebook with the outputs so far: {partial}"
            ) from None
        except Exception as err:
            raise NotebookError(
                f"{name}: execution stopped ({type(err).__name__}: {err}); "
                f"partial notebook (if any): {partial}"
            ) from err
        wall = time.perf_counter() - start
        if results_path.exists():
            results = json.loads(results_path.read_text(encoding="utf-8"))
        else:
            warnings.warn(f"{name} did not call cmmd.book.write_results: its ledger is empty")
            results = {"ledger": [], "metrics": {}}

    ledger = validate_ledger(results.get("ledger", []), profile=profile)
    record = {
        "notebook": name,
        "source": _relative(src),
        "source_hash": digest,
        "profile": profile,
        "device": str(resolved),
        "hardware": hardware_summary(resolved),
        "seed": int(seed),
        "parameters": params,
        "wall_time_s": round(wall, 2),
        "executed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    executed = nbformat.read(partial, as_version=4)
    _tidy_executed(executed, params, src, out_nb)
    executed.metadata["cmmd"] = record
    _atomic_write_text(out_nb, nbformat.writes(executed) + "\n")
    _atomic_write_text(
        out_json,
        json.dumps({**record, "ledger": ledger, "metrics": results.get("metrics", {})}, indent=2) + "\n",
    )
    partial.unlink(missing_ok=True)
    log(f"{name}: done in {wall:.1f} s -> {_relative(out_nb)}")
    return RunOutcome(name, "ran", out_nb, wall)


def _copy_caption(new: dict, old: dict) -> None:
    """Give the executed cell's metadata ``old`` the caption and alt text (``mystnb``) of the source's ``new``."""
    if "mystnb" in new:
        old["mystnb"] = new["mystnb"]
    else:
        old.pop("mystnb", None)


def refresh_text(
    name: str,
    *,
    notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
    generated_dir: str | os.PathLike = GENERATED_DIR,
    log: Callable[[str], None] = print,
) -> None:
    """Copy the prose of an edited ``notebooks/NAME.py`` into its executed notebook, executing nothing: the
    markdown cells and the figure captions and alt texts of the code cells (their ``mystnb`` metadata).

    Allowed only when the cells of the source line up with the executed ones and every code cell is
    unchanged (the ``parameters`` cell compared as the run rewrote it): the outputs are then exactly
    those of the edited source under the run's profile, device and seed. The run record keeps its
    time and date, gains ``text_refreshed_at``, and takes the new source hash, so that ``--check``
    passes. Prose that quotes numbers must still agree with the outputs: that is the author's part.

    Raises:
        NotebookError: no executed notebook, or the code differs (the message names the first
            differing cell and says to rerun the notebook).
    """
    import nbformat

    src = Path(notebooks_dir) / f"{name}.py"
    out_nb, out_json = Path(generated_dir) / f"{name}.ipynb", Path(generated_dir) / f"{name}.json"
    meta = _read_metadata(out_nb)
    if meta is None or not out_json.exists():
        raise NotebookError(f"{name}: no executed notebook in {generated_dir}; run `python -m cmmd.book {name}`")
    digest = source_hash(src)
    if meta.get("source_hash") == digest:
        log(f"{name}: up to date, nothing to refresh")
        return
    executed = nbformat.read(out_nb, as_version=4)
    source = load_notebook(src)
    rerun = f"rerun it: python -m cmmd.book --force --profile {meta['profile']} {name}"
    if len(source.cells) != len(executed.cells):
        raise NotebookError(f"{name}: {len(source.cells)} cells in the source, {len(executed.cells)} executed; {rerun}")
    for index, (new, old) in enumerate(zip(source.cells, executed.cells)):
        if new.cell_type != old.cell_type:
            raise NotebookError(f"{name}: cell {index} changed from {old.cell_type} to {new.cell_type}; {rerun}")
        if new.cell_type == "markdown":
            old.source, old.metadata = new.source, new.metadata
            continue
        code = new.source
        if "parameters" in new.metadata.get("tags", []):
            code = _rewrite_parameters(code, meta["parameters"])
        if code != old.source:
            raise NotebookError(f"{name}: code cell {index} differs from the executed one; {rerun}")
        _copy_caption(new.metadata, old.metadata)
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = {**meta, "source_hash": digest, "text_refreshed_at": stamp}
    executed.metadata["cmmd"] = record
    results = json.loads(out_json.read_text(encoding="utf-8"))
    results.update(source_hash=record["source_hash"], text_refreshed_at=stamp)
    _atomic_write_text(out_nb, nbformat.writes(executed) + "\n")
    _atomic_write_text(out_json, json.dumps(results, indent=2) + "\n")
    log(f"{name}: text refreshed from {_relative(src)} (code unchanged, outputs kept)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cmmd.book",
        description="Execute the book's notebooks (notebooks/*.py) into book/generated/.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="notebooks to run (default: all)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=list(PROFILES))
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rerun notebooks that are up to date")
    parser.add_argument(
        "--check",
        action="store_true",
        help="run nothing; exit 1 if an executed notebook is stale against its source or profile",
    )
    parser.add_argument(
        "--refresh-text",
        action="store_true",
        help="run nothing; copy edited markdown into executed notebooks whose code is unchanged",
    )
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=GENERATED_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        names = resolve_names(args.names, args.notebooks)
        if args.check:
            stale = {
                n: stale_reasons(n, profile=args.profile, notebooks_dir=args.notebooks, generated_dir=args.output)
                for n in names
            }
            for n, reasons in stale.items():
                print(f"{n}: " + ("; ".join(reasons) if reasons else "up to date"))
            return 1 if any(stale.values()) else 0
        if args.refresh_text:
            for n in names:
                refresh_text(n, notebooks_dir=args.notebooks, generated_dir=args.output)
            return 0
        if not names:
            print(f"no notebooks in {args.notebooks}", file=sys.stderr)
        for n in names:
            run_notebook(
                n,
                profile=args.profile,
                device=args.device,
                seed=args.seed,
                force=args.force,
                notebooks_dir=args.notebooks,
                generated_dir=args.output,
            )
    except (NotebookError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.check and Path(args.output).is_dir():
            write_ledger_pages(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
