"""The two generated pages that the introduction includes: the reproduction ledger and the table of runs.

Every executed chapter leaves a run record ``book/generated/NAME.json`` (profile, hardware, times, and the
ledger rows of :func:`cmmd.book.results.write_results`). :func:`write_ledger_pages` reads them all and
writes ``ledger.md`` (every headline number beside the paper's, :func:`render_ledger`) and ``runs.md``
(how each chapter was produced, :func:`render_runs`). Only the standard library is needed.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

from cmmd.book.paths import GENERATED_DIR
from cmmd.book.results import atomic_write_text, validate_ledger


def ledger_status(row: dict) -> str:
    """The verdict of one ledger row, derived from its intervals (:func:`cmmd.book.results.derive_status`).

    ``ahead of``/``behind``/``level with`` the baseline by the interval of the difference,
    ``consistent with``/``contradicts`` an expected range by the interval of ours, ``no interval: not
    compared`` where there is something to compare with but no interval, ``—`` where there is nothing.

    Raises:
        ValueError: the row is not a valid ledger row (:func:`cmmd.book.results.validate_ledger`).
    """
    return validate_ledger([row])[0]["status"]


def format_number(value: float | None) -> str:
    """A ledger number in at most four significant digits (``—`` for None, scientific when tiny or huge)."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.2e}"


def _interval_decimals(low: float, high: float) -> int | None:
    """Decimals that round to a step of at most half the interval's width; None: use :func:`format_number`."""
    width = high - low
    if width <= 0 or max(abs(low), abs(high)) >= 1e5:
        return None
    decimals = max(0, -math.floor(math.log10(width / 2)))
    return decimals if decimals <= 6 else None


def _fixed(value: float, decimals: int | None) -> str:
    """``value`` with ``decimals`` decimals, or :func:`format_number` where that would hide it (None, or a
    non-zero value that would round to 0)."""
    if decimals is None or value == 0 or round(value, decimals) == 0:
        return format_number(value)
    return f"{value:.{decimals}f}"


def format_interval(bounds: Sequence[float], estimate: float | None = None) -> str:
    """``"24.47 [24.1, 24.8]"``: an estimate and its interval, the ends rounded to a step of at most half the
    interval's width and the estimate to one decimal more; only ``"[24.1, 24.8]"`` without an estimate."""
    low, high = bounds
    decimals = _interval_decimals(low, high)
    text = f"[{_fixed(low, decimals)}, {_fixed(high, decimals)}]"
    if estimate is None:
        return text
    return f"{_fixed(estimate, None if decimals is None else decimals + 1)} {text}"


def ours_text(row: dict) -> str:
    """Our value of a validated row, with its interval where it has one (``24.47 [24.1, 24.8]``)."""
    if row["ours_ci95"] is None:
        return format_number(row["ours"])
    return format_interval(row["ours_ci95"], row["ours"])


def compared_text(row: dict) -> str:
    """What a validated row is compared with: the baseline and the difference with its interval
    (``bicubic 24.8; Δ -0.34 [-0.6, -0.1]``), and the expected range (``bound exponents [0.06, 0.5]``)."""
    parts = []
    base = row["baseline"]
    if base is not None:
        text = f"{base['name']} {format_number(base['value'])}"
        if base["difference_ci95"] is not None:
            text += f"; Δ {format_interval(base['difference_ci95'], row['ours'] - base['value'])}"
        parts.append(text)
    expected = row["expected"]
    if expected is not None:
        parts.append(f"{expected['name']} [{format_number(expected['low'])}, {format_number(expected['high'])}]")
    return "; ".join(parts) or "—"


#: How :func:`evaluation_text` words a row's ``tuned_on``.
TUNED_ON_TEXT = {"validation": "tuned on validation", "none": "not tuned", "test": "tuned on test"}


def evaluation_text(row: dict, *, markdown: bool = True) -> str:
    """How a validated row was measured: ``n = 200, tuned on validation, `cpu```. What a row does not state
    (the size and the tuning of rows written before they were recorded) is left out."""
    parts = [] if row["n"] is None else [f"n = {row['n']}"]
    if row["tuned_on"] is not None:
        parts.append(TUNED_ON_TEXT[row["tuned_on"]])
    parts.append(f"`{row['profile']}`" if markdown else row["profile"])
    return ", ".join(parts)


def metric_text(row: dict) -> str:
    """The metric with its direction: ``↑`` higher is better, ``↓`` lower is better, nothing for a quantity
    that is not a score."""
    arrow = {True: " ↑", False: " ↓", None: ""}[row["higher_is_better"]]
    return row["metric"] + arrow


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
    """MyST table of every chapter's ledger rows (``book/generated/ledger.md``).

    Few columns, so that it reads on a phone: the experiment (a link to its chapter) with the metric, ours
    with its interval, the paper's number (only when some row has one), what a row is compared with (the
    baseline with the difference and its interval, or an expected range; only when some row has one), how
    it was measured (n, the tuning, the profile) and the status derived from the intervals.

    A record whose rows are not valid (:func:`cmmd.book.results.validate_ledger`) is left out with a warning
    that names it and says what to do, so that one bad record does not stop the runner's last step.
    """
    rows = []
    for record in records:
        try:
            rows += [(record["notebook"], row) for row in validate_ledger(record["ledger"])]
        except ValueError as error:
            warnings.warn(f"{record['notebook']}.json is left out of the ledger: {error}. Rerun the chapter: "
                          f"python -m cmmd.book --force {record['notebook']}", stacklevel=2)
    if not rows:
        return "No chapter has recorded results yet: run `make book`.\n"
    with_paper = any(row["paper"] is not None for _, row in rows)
    with_compared = any(row["baseline"] or row["expected"] for _, row in rows)
    head, align = ["Experiment (chapter): metric", "Ours [95% CI]"], ["---", "---:"]
    if with_paper:
        head.append("Paper")
        align.append("---:")
    if with_compared:
        head.append("Compared with")
        align.append("---")
    head += ["Measured", "Status"]
    align += ["---", "---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for name, row in rows:
        link = _chapter_link(name, f"{row['experiment']} ({_chapter_number(name)})")
        cells = [f"{link}: {_cell(metric_text(row))}", _cell(ours_text(row))]
        if with_paper:
            cells.append(format_number(row["paper"]))
        if with_compared:
            cells.append(_cell(compared_text(row)))
        cells += [_cell(evaluation_text(row)), _cell(row["status"])]
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
    atomic_write_text(generated_dir / "ledger.md", render_ledger(records))
    atomic_write_text(generated_dir / "runs.md", render_runs(records))
