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
#: Keys a row may add (ledger rows v2): the evaluation's size, the intervals, the tuning data, an expected
#: range, and the status (derived from the rest; a typed one must equal it).
OPTIONAL_LEDGER_KEYS = ("n", "ours_ci95", "tuned_on", "expected", "status")
#: What a row's settings were chosen on: a validation split, nothing (fixed in advance), or the test data.
TUNED_ON = ("validation", "none", "test")
#: Profiles whose rows may not be tuned on the test data (smoke runs the cpu profile's code path).
NO_TEST_TUNING = ("smoke", "cpu")
#: The status of a row that has something to compare with but no interval to compare it by.
NOT_COMPARED = "no interval: not compared"
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


def interval_bounds(value: Any, where: str = "interval") -> list[float] | None:
    """``[low, high]`` of an interval given as a pair ``(low, high)`` or as an object with ``.low`` and ``.high``
    (e.g. a :class:`cmmd.statistics.Interval`); ``None`` stays ``None``.

    Raises:
        ValueError: naming ``where``, when the value is not two finite numbers with low <= high.
    """
    if value is None:
        return None
    if hasattr(value, "low") and hasattr(value, "high"):
        level = getattr(value, "level", 0.95)
        if abs(level - 0.95) > 1e-9:
            raise ValueError(f"{where} is a {level:.0%} interval; the ledger holds 95% intervals: compute it "
                             "with level=0.95")
        pair = [value.low, value.high]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = list(value)
    else:
        raise ValueError(
            f"{where} must be [low, high] (two numbers) or an interval with .low and .high, got {value!r}"
        )
    low, high = (_number(end, f"{where}[{k}]") for k, end in enumerate(pair))
    if low > high:
        raise ValueError(f"{where} = [{low}, {high}] has low > high: pass the interval as [low, high]")
    return [low, high]


def _contains(bounds: list[float], value: float) -> bool:
    """Whether ``value`` lies in ``bounds``, up to the rounding of computing the two separately."""
    slack = 1e-9 * max(1.0, abs(bounds[0]), abs(bounds[1]), abs(value))
    return bounds[0] - slack <= value <= bounds[1] + slack


def derive_status(row: dict) -> str:
    """The verdict of a validated row, from its intervals only (never from a bare difference).

    - Baseline with ``difference_ci95`` (an interval of ours - baseline): ``ahead of NAME`` when the
      interval lies entirely on the better side of 0, ``behind NAME`` when it lies entirely on the worse
      side, ``level with NAME`` when it contains 0 (an end at 0 counts as containing it).
    - ``expected`` range: ``consistent with NAME`` when ``ours_ci95`` meets the range (ends included),
      ``contradicts NAME`` when it lies outside.
    - Something to compare with but no interval to compare by: ``no interval: not compared``.
    - Nothing to compare with: ``—``.

    Several verdicts (a baseline and an expected range) are joined with ``; ``.
    """
    parts = []
    baseline = row["baseline"]
    if baseline is not None:
        diff = baseline["difference_ci95"]
        if diff is None:
            parts.append(NOT_COMPARED)
        else:
            sign = 1.0 if row["higher_is_better"] else -1.0
            better, worse = (diff[0], diff[1]) if sign > 0 else (-diff[1], -diff[0])
            if better > 0:
                parts.append(f"ahead of {baseline['name']}")
            elif worse < 0:
                parts.append(f"behind {baseline['name']}")
            else:
                parts.append(f"level with {baseline['name']}")
    expected = row["expected"]
    if expected is not None:
        ours = row["ours_ci95"]
        if ours is None:
            parts.append(NOT_COMPARED)
        elif ours[0] <= expected["high"] and ours[1] >= expected["low"]:
            parts.append(f"consistent with {expected['name']}")
        else:
            parts.append(f"contradicts {expected['name']}")
    return "; ".join(dict.fromkeys(parts)) or "—"


def _baseline(value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not {"name", "value"} <= set(value) <= {"name", "value", "difference_ci95"}:
        raise ValueError(
            f"{where}['baseline'] must be None or {{'name': str, 'value': float}}, optionally with "
            f"'difference_ci95': [low, high] (ours - baseline); got {value!r}"
        )
    if not isinstance(value["name"], str) or not value["name"].strip():
        raise ValueError(f"{where}['baseline']['name'] must be a non-empty string")
    return {
        "name": value["name"],
        "value": _number(value["value"], f"{where}['baseline']['value']"),
        "difference_ci95": interval_bounds(value.get("difference_ci95"), f"{where}['baseline']['difference_ci95']"),
    }


def _expected(value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"name", "low", "high"}:
        raise ValueError(
            f"{where}['expected'] must be None or {{'name': str, 'low': float, 'high': float}} (the range a "
            f"quantity that is not a score should fall in, e.g. the exponent range of a bound); got {value!r}"
        )
    if not isinstance(value["name"], str) or not value["name"].strip():
        raise ValueError(f"{where}['expected']['name'] must be a non-empty string")
    low, high = interval_bounds([value["low"], value["high"]], f"{where}['expected'][low, high]")
    return {"name": value["name"], "low": low, "high": high}


def _row(row: Any, i: int, seen: set, profile: str | None) -> dict:
    """One validated row of :func:`validate_ledger` (``seen``: the (experiment, metric) pairs before it)."""
    where = f"ledger[{i}]"
    if not isinstance(row, dict):
        raise ValueError(f"{where} must be a dict, got {type(row).__name__}")
    missing = [k for k in LEDGER_KEYS if k not in row]
    extra = sorted(set(row) - set(LEDGER_KEYS) - set(OPTIONAL_LEDGER_KEYS))
    if missing or extra:
        raise ValueError(
            f"{where} has missing keys {missing} and unknown keys {extra}; a row has the keys "
            f"{list(LEDGER_KEYS)} and may add {list(OPTIONAL_LEDGER_KEYS)}"
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
    higher = row["higher_is_better"]
    if higher is not None and not isinstance(higher, bool):
        raise ValueError(
            f"{where}['higher_is_better'] must be True or False, or None for a quantity that is not a score"
        )
    if row["profile"] not in PROFILES:
        raise ValueError(f"{where}['profile'] = {row['profile']!r} is not one of {list(PROFILES)}")
    if profile is not None and row["profile"] != profile:
        raise ValueError(
            f"{where}['profile'] = {row['profile']!r} but the notebook ran with profile "
            f"{profile!r}: pass the notebook's `profile` variable"
        )
    ours = _number(row["ours"], f"{where}['ours']")
    baseline = _baseline(row["baseline"], where)
    if baseline is not None and higher is None:
        raise ValueError(
            f"{where}['baseline'] needs a direction to be ahead of or behind: set higher_is_better to True or "
            "False, or compare a quantity that is not a score with an 'expected' range instead"
        )
    n = row.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"{where}['n'] must be a positive int (the number of evaluation items), got {n!r}")
    ours_ci95 = interval_bounds(row.get("ours_ci95"), f"{where}['ours_ci95']")
    if ours_ci95 is not None and not _contains(ours_ci95, ours):
        raise ValueError(
            f"{where}['ours_ci95'] = {ours_ci95} does not contain ours = {ours}: pass the interval computed "
            "for this same estimate"
        )
    diff = None if baseline is None else baseline["difference_ci95"]
    if diff is not None and not _contains(diff, ours - baseline["value"]):
        raise ValueError(
            f"{where}['baseline']['difference_ci95'] = {diff} does not contain ours - baseline = "
            f"{ours - baseline['value']}: pass the interval of ours - baseline (not baseline - ours) for "
            "these same two values"
        )
    if (ours_ci95 is not None or diff is not None) and n is None:
        raise ValueError(
            f"{where}['n'] is missing: a row with an interval must say over how many evaluation items it "
            "was computed"
        )
    tuned_on = row.get("tuned_on")
    if tuned_on is not None and tuned_on not in TUNED_ON:
        raise ValueError(f"{where}['tuned_on'] = {tuned_on!r} is not one of {list(TUNED_ON)}")
    if tuned_on == "test" and row["profile"] in NO_TEST_TUNING:
        raise ValueError(
            f"{where}['tuned_on'] = 'test' in profile {row['profile']!r}: settings must be chosen on "
            "validation data, never on the test items the row reports; tune on a validation split and "
            "pass tuned_on='validation'"
        )
    out = {
        "experiment": row["experiment"],
        "metric": row["metric"],
        "ours": ours,
        "paper": _number(row["paper"], f"{where}['paper']", allow_none=True),
        "baseline": baseline,
        "higher_is_better": higher,
        "profile": row["profile"],
        "n": n,
        "ours_ci95": ours_ci95,
        "tuned_on": tuned_on,
        "expected": _expected(row.get("expected"), where),
    }
    out["status"] = derive_status(out)
    if "status" in row and row["status"] != out["status"]:
        raise ValueError(
            f"{where}['status'] = {row['status']!r}, but the intervals say {out['status']!r}: the status is "
            "derived from the intervals, never typed; leave 'status' out"
        )
    return out


def validate_ledger(rows: Sequence[dict], *, profile: str | None = None) -> list[dict]:
    """Check ledger rows and return them as plain JSON-ready dicts, each with its derived ``status``.

    A row has the keys ``{"experiment": str, "metric": str, "ours": float, "paper": float | None,
    "baseline": {"name": str, "value": float} | None, "higher_is_better": bool | None, "profile": str}``;
    ``experiment`` and ``metric`` are lowercase ids with hyphens (``mnist-inpainting``, ``psnr-mean``);
    ``profile`` is one of :data:`cmmd.runtime.PROFILES` (and equals ``profile`` when given). A pair
    (experiment, metric) appears once. ``higher_is_better`` is None for a quantity that is not a score
    (an exponent, a slope). A row may add (ledger rows v2):

    - ``n``: the number of evaluation items, a positive int (required with an interval);
    - ``ours_ci95``: ``[low, high]``, a 95% interval of ``ours`` (paired bootstrap over the items), which
      contains ``ours``;
    - ``baseline["difference_ci95"]``: ``[low, high]``, a 95% interval of ours - baseline, paired over the
      items, which contains ours - baseline;
    - ``tuned_on``: what the settings were chosen on, one of :data:`TUNED_ON`; ``"test"`` is refused in
      the profiles :data:`NO_TEST_TUNING`;
    - ``expected``: ``{"name": str, "low": float, "high": float}``, the range the value should fall in;
    - ``status``: derived by :func:`derive_status`; a row that states one must state the derived one.

    Intervals may be given as pairs or as objects with ``.low`` and ``.high``. The returned rows have
    every key (None where a row does not state it) and the derived ``status``; rows without intervals
    (as written before v2) stay valid, with the status ``no interval: not compared`` or ``—``.

    Raises:
        ValueError: naming the row (experiment/metric) and the field that is wrong.
    """
    if isinstance(rows, dict) or not isinstance(rows, (list, tuple)):
        raise ValueError(f"ledger must be a list of dicts, got {type(rows).__name__}")
    seen: set = set()
    return [_row(row, i, seen, profile) for i, row in enumerate(rows)]


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
