"""The two generated pages that the introduction includes: the reproduction ledger and the table of runs.

Every executed chapter leaves a run record ``book/generated/NAME.json`` (profile, hardware, times, and the
ledger rows of :func:`cmmd.book.results.write_results`). :func:`write_ledger_pages` reads them all and
writes ``ledger.md`` (every headline number beside the paper's, :func:`render_ledger`) and ``runs.md``
(how each chapter was produced, :func:`render_runs`). Only the standard library is needed.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

from cmmd.book.paths import GENERATED_DIR
from cmmd.book.results import atomic_write_text


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


def format_number(value: float | None) -> str:
    """A ledger number in at most four significant digits (``—`` for None, scientific when tiny or huge)."""
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
            format_number(row["ours"]),
            format_number(row["paper"]),
        ]
        if with_baseline:
            base = row["baseline"]
            cells.append(_cell(f"{base['name']}: {format_number(base['value'])}") if base else "—")
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
    atomic_write_text(generated_dir / "ledger.md", render_ledger(records))
    atomic_write_text(generated_dir / "runs.md", render_runs(records))
