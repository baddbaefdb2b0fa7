"""Running the chapters: ``notebooks/NAME.py`` executed by papermill into ``book/generated/NAME.ipynb`` and ``.json``.

Pipeline::

    notebooks/NAME.py --jupytext--> papermill (profile, device, seed, results_path)
        --> book/generated/NAME.ipynb   executed notebook, run record in metadata["cmmd"]
        --> book/generated/NAME.json    run record + the chapter's ledger rows and metrics

A notebook runs into a temporary file that replaces the old one only on success; a failing cell
stops the run and names the cell, the error and the partial notebook (:func:`run_notebook`). A notebook
whose source hash and parameters match its executed copy is skipped (``force`` reruns it);
:func:`stale_reasons` says why a copy is not current. After an edit of the prose only,
:func:`refresh_text` copies the markdown into the executed notebook without running it (it refuses
when any code cell changed). The command line is :mod:`cmmd.book.__main__`.
"""

from __future__ import annotations

import datetime as _dt
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

from cmmd.book.contract import KERNEL_NAME, NotebookError, load_notebook, source_hash
from cmmd.book.paths import GENERATED_DIR, NOTEBOOKS_DIR, relative
from cmmd.book.results import atomic_write_text, validate_ledger
from cmmd.runtime import check_profile, hardware_summary, resolve_device, versions

#: The profile of the committed book (``make book``).
DEFAULT_PROFILE = "cpu"


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
    """The run record (``metadata["cmmd"]``) of an executed notebook; None if it is missing or unreadable."""
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
    """What :func:`run_notebook` did with one notebook."""

    name: str
    status: str  # "ran" or "skipped"
    notebook: Path
    wall_time_s: float | None = None


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
    pm["input_path"] = relative(source)
    pm["output_path"] = relative(output)


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
                f"{name}: cell {_source_cell(nb, err.cell_index)} of {relative(src)} (0-based, markdown cells "
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
        "source": relative(src),
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
    atomic_write_text(out_nb, nbformat.writes(executed) + "\n")
    atomic_write_text(
        out_json,
        json.dumps({**record, "ledger": ledger, "metrics": results.get("metrics", {})}, indent=2) + "\n",
    )
    partial.unlink(missing_ok=True)
    log(f"{name}: done in {wall:.1f} s -> {relative(out_nb)}")
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
    atomic_write_text(out_nb, nbformat.writes(executed) + "\n")
    atomic_write_text(out_json, json.dumps(results, indent=2) + "\n")
    log(f"{name}: text refreshed from {relative(src)} (code unchanged, outputs kept)")
