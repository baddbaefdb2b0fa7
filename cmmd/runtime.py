"""Where and how a notebook runs: device choice, hardware description, the run banner.

Every chapter of the book opens with :func:`banner` (profile, hardware, versions) and closes with
:func:`footer` (its run time), so each page states what produced it (the profiles table of README.md,
section "The book").
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import platform
import re
import time
from typing import Callable

import torch

from cmmd.experiments.spec import PROFILES, check_profile  # noqa: F401  (re-exported: the profiles live with the settings)



def resolve_device(name: str | torch.device) -> torch.device:
    """Turn a device name into a :class:`torch.device`.

    ``"auto"`` picks ``cuda`` when a CUDA GPU is usable and ``cpu`` otherwise. Any other name
    (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is checked to exist on this machine.

    Raises:
        ValueError: the name is not a device, or names a device this machine does not have.
    """
    if isinstance(name, torch.device):
        device = name
    elif not isinstance(name, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {name!r}")
    elif name.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name.strip())
        except RuntimeError as err:
            raise ValueError(
                f"device {name!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} was requested but no CUDA GPU is usable here; "
                "use device='auto' or device='cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("device 'mps' was requested but is not available; use 'auto' or 'cpu'")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {str(device)!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    return device


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def hardware_summary(device: str | torch.device) -> str:
    """One line naming the hardware that ``device`` runs on, e.g. ``"CPU: AMD EPYC (2 cores)"``."""
    device = resolve_device(device)
    cpu = f"{_cpu_name()} ({_cpu_count()} cores)"
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        gib = props.total_memory / 2**30
        return f"GPU: {props.name} ({gib:.0f} GiB, CUDA {torch.version.cuda}); host CPU: {cpu}"
    if device.type == "mps":
        return f"GPU: Apple MPS; host CPU: {cpu}"
    return f"CPU: {cpu}, {torch.get_num_threads()} torch threads"


def versions() -> dict[str, str]:
    """Versions of Python, torch and the packages a chapter's numbers depend on."""
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("cmmd", "numpy", "matplotlib", "scipy", "scikit-image"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def format_duration(seconds: float) -> str:
    """``73.4`` → ``"1 min 13 s"``; below a minute, one decimal."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _display(markdown: str, html_text: str, plain: str) -> None:
    """Show Markdown in the book, HTML in Jupyter/Colab, plain text in a terminal."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: print
        print(plain)
        return
    if get_ipython() is None:
        print(plain)
        return
    display({"text/markdown": markdown, "text/html": html_text, "text/plain": plain}, raw=True)


def _box(title: str, rows: list[tuple[str, str]], kind: str) -> None:
    md_rows = "\n".join(f"- **{k}:** {v}" for k, v in rows)
    markdown = f"```{{admonition}} {title}\n:class: {kind}\n{md_rows}\n```\n"

    def to_html(text: str) -> str:
        return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))

    html_rows = "".join(f"<li><b>{html.escape(k)}:</b> {to_html(v)}</li>" for k, v in rows)
    html_text = (
        '<div style="border-left:4px solid #4a7ab0;background:#f3f7fb;padding:0.4em 0.9em;'
        'margin:0.4em 0">'
        f"<b>{html.escape(title)}</b><ul style='margin:0.3em 0'>{html_rows}</ul></div>"
    )
    plain = title + "\n" + "\n".join(f"  {k}: {v}" for k, v in rows)
    _display(markdown, html_text, plain)


def banner(profile: str, device: str | torch.device) -> None:
    """Display which profile, hardware and versions produce this page (an admonition in the book).

    Args:
        profile: one of :data:`PROFILES`.
        device: the device the notebook computes on (a name or a :class:`torch.device`).
    """
    check_profile(profile)
    device = resolve_device(device)
    v = versions()
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        ("Profile", f"`{profile}` ({PROFILES[profile]})"),
        ("Hardware", hardware_summary(device)),
        ("Software", f"torch {v['torch']}, Python {v['python']}, cmmd {v.get('cmmd', '?')}"),
        ("Executed", when),
    ]
    if profile != "paper":
        rows.append(
            ("Note", "reduced settings: rerun with profile `paper` on a GPU for the paper's settings")
        )
    _box("How this page was produced", rows, "note")


def missing_data_notice(title: str, error: Exception, consequence: str) -> None:
    """Display, as a warning box, that a data set is not on this machine and what the chapter does instead.

    Args:
        title: the data set, e.g. ``"FashionMNIST"``.
        error: the loader's error (it says what is missing and how to get it).
        consequence: what the page shows without it, e.g. ``"this run shows MNIST only"``.
    """
    _box(f"{title} is not available on this machine", [("Without it", consequence), ("Loader", str(error))],
         "warning")


def footer(seconds: float, device: str | torch.device) -> None:
    """Display the run time of the notebook, measured from its first computation."""
    device = resolve_device(device)
    _box(
        "Run time",
        [("Total", format_duration(seconds)), ("Hardware", hardware_summary(device))],
        "note",
    )


def timed(fn: Callable[[], object], *, device: str | torch.device, repeat: int = 3) -> float:
    """Best wall time in seconds of ``fn()`` over ``repeat`` calls (CUDA work is synchronised)."""
    device = resolve_device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    best = float("inf")
    for _ in range(max(1, int(repeat))):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best
