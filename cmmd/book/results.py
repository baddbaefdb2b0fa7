"""The results file of a chapter: its ledger rows (headline numbers) and metrics, validated and written atomically.

Every chapter ends with :func:`write_results` (through :meth:`cmmd.book.kit.Chapter.finish`); the runner
(:mod:`cmmd.book.runner`) adds the run's profile, hardware and times to the same file, and
:mod:`cmmd.book.pages` renders the ledger pages of the introduction from it. This module needs only the
standard library (and :mod:`cmmd.runtime` for the profile names), so a chapter opened in Colab imports it
without the book's build tools.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

from cmmd.runtime import PROFILES

LEDGER_KEYS = ("experiment", "metric", "ours", "paper", "baseline", "higher_is_better", "profile")
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def _number(value: Any, where: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # 0-d tensor or numpy scalar
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a number or None" if allow_none else "a number"
        raise ValueError(f"{where} must be {kind}, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where} is {value}; JSON holds only finite numbers: store a finite value")
    return value


def validate_ledger(rows: Sequence[dict], *, profile: str | None = None) -> list[dict]:
    """Check ledger rows and return them as plain JSON-ready dicts.

    Each row is ``{"experiment": str, "metric": str, "ours": float, "paper": float | None,
    "baseline": {"name": str, "value": float} | None, "higher_is_better": bool, "profile": str}``;
    ``experiment`` and ``metric`` are lowercase ids with hyphens (``mnist-inpainting``,
    ``psnr-mean``); ``profile`` is one of :data:`cmmd.runtime.PROFILES` (and equals ``profile``
    when given). A pair (experiment, metric) appears once.

    Raises:
        ValueError: naming the row and the field that is wrong.
    """
    if isinstance(rows, dict) or not isinstance(rows, (list, tuple)):
        raise ValueError(f"ledger must be a list of dicts, got {type(rows).__name__}")
    out, seen = [], set()
    for i, row in enumerate(rows):
        where = f"ledger[{i}]"
        if not isinstance(row, dict):
            raise ValueError(f"{where} must be a dict, got {type(row).__name__}")
        missing = [k for k in LEDGER_KEYS if k not in row]
        extra = sorted(set(row) - set(LEDGER_KEYS))
        if missing or extra:
            raise ValueError(
                f"{where} has missing keys {missing} and unknown keys {extra}; "
                f"a row has exactly {list(LEDGER_KEYS)}"
            )
        for key in ("experiment", "metric"):
            if not isinstance(row[key], str) or not _ID.match(row[key]):
                raise ValueError(
                    f"{where}[{key!r}] = {row[key]!r} is not an id: use lowercase letters, digits "
                    "and single hyphens, e.g. 'mnist-inpainting' or 'psnr-mean'"
                )
        where = f"{where} ({row['experiment']}/{row['metric']})"
        if (row["experiment"], row["metric"]) in seen:
            raise ValueError(f"{where} appears twice")
        seen.add((row["experiment"], row["metric"]))
        baseline = row["baseline"]
        if baseline is not None:
            if not isinstance(baseline, dict) or set(baseline) != {"name", "value"}:
                raise ValueError(f"{where}['baseline'] must be None or {{'name': str, 'value': float}}")
            if not isinstance(baseline["name"], str) or not baseline["name"].strip():
                raise ValueError(f"{where}['baseline']['name'] must be a non-empty string")
            baseline = {
                "name": baseline["name"],
                "value": _number(baseline["value"], f"{where}['baseline']['value']"),
            }
        if not isinstance(row["higher_is_better"], bool):
            raise ValueError(f"{where}['higher_is_better'] must be True or False")
        if row["profile"] not in PROFILES:
            raise ValueError(f"{where}['profile'] = {row['profile']!r} is not one of {list(PROFILES)}")
        if profile is not None and row["profile"] != profile:
            raise ValueError(
                f"{where}['profile'] = {row['profile']!r} but the notebook ran with profile "
                f"{profile!r}: pass the notebook's `profile` variable"
            )
        out.append(
            {
                "experiment": row["experiment"],
                "metric": row["metric"],
                "ours": _number(row["ours"], f"{where}['ours']"),
                "paper": _number(row["paper"], f"{where}['paper']", allow_none=True),
                "baseline": baseline,
                "higher_is_better": row["higher_is_better"],
                "profile": row["profile"],
            }
        )
    return out


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-string key {key!r}")
        return {k: _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist") and getattr(value, "ndim", 1) > 0:
        return _jsonable(value.tolist(), where)  # small tensors / arrays
    return _number(value, where)


def validate_metrics(metrics: dict) -> dict:
    """Return ``metrics`` as JSON-ready data (str keys; numbers finite; tensors to lists)."""
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict, got {type(metrics).__name__}")
    return _jsonable(metrics, "metrics")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(results_path: str | os.PathLike, *, ledger: list[dict], metrics: dict) -> None:
    """Store a chapter's headline figures for ``python -m cmmd.book`` (call it once, at the end).

    Args:
        results_path: the notebook's ``results_path`` parameter. Empty (a standalone run, e.g. in
            Colab): the rows are still checked, nothing is written, and a warning says so.
        ledger: rows of the reproduction ledger, see :func:`validate_ledger`.
        metrics: further numbers of the chapter (str keys; numbers, lists, nested dicts).
    """
    rows = validate_ledger(ledger)
    data = {"ledger": rows, "metrics": validate_metrics(metrics)}
    if not str(results_path):
        warnings.warn(
            "results_path is empty: the results were checked but not written "
            "(python -m cmmd.book sets it when it builds the book)",
            stacklevel=2,
        )
        return
    atomic_write_text(Path(results_path), json.dumps(data, indent=2) + "\n")
