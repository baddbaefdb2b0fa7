"""The validation trials that chose a reduced profile's settings, as a table on the chapter's page.

``scripts/validation_trials.py`` fits each candidate setting on part of the training set and scores it on held-out
training images (never on the book's test images), writing ``book/generated/trials/<experiment>.json``:
``{"experiment", "n_fit", "n_val", "trials": [{"candidate", "why", "settings", "cpu_seconds", "history", <metrics>}]}``.
:func:`trials_markdown` renders such a file; :func:`show_trials` displays it in a chapter.
"""

from __future__ import annotations

import json
from pathlib import Path

from cmmd.experiments.mnist import MIN_MSE_RATIO, choose  # the rule lives beside the candidates

__all__ = ["MIN_MSE_RATIO", "TARGETS", "choose", "curve_figure", "curve_markdown", "curve_text", "load_trials", "show_trials",
           "trials_markdown"]

#: Where the trial records live in a checkout of the repository.
TRIALS_DIR = Path(__file__).resolve().parents[2] / "book" / "generated" / "trials"
#: Metric key → (column title, format); metrics not listed are shown with their key and 3 significant digits.
COLUMNS = {
    "fid": ("FID (judge features)", "{:.1f}"),
    "fid_real_vs_real": ("FID real vs real", "{:.1f}"),
    "accuracy": ("judge accuracy", "{:.1%}"),
    "accuracy_real": ("judge accuracy on real images", "{:.1%}"),
    "background_rms": ("background RMS", "{:.3f}"),
    "spread": ("within-class spread / real", "{:.2f}"),
    "psnr_mean": ("PSNR of the mean (dB)", "{:.2f}"),
    "mse_ratio": ("MSE ratio sample/mean", "{:.2f}"),
    "mse_ratio_exact": ("exact sampler's ratio", "{:.2f}"),
}
_NOT_METRICS = {"candidate", "why", "settings", "cpu_seconds", "history", "curve", "curve_history"}
#: The class-conditional targets of the sampler-quality work on validation images: metric → (direction, bound).
#: Real digits have background 0 and spread 1; an accuracy of 90 % is what a judge gives clearly drawn digits.
TARGETS = {"background_rms": ("<=", 0.05), "accuracy": (">=", 0.90), "spread": (">=", 0.80)}


def load_trials(experiment: str, folder: Path = TRIALS_DIR) -> dict | None:
    """The trial record of ``experiment``, or None when the file is not there (e.g. an installed package)."""
    path = folder / f"{experiment}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _cell(key: str, value: object) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    fmt = COLUMNS.get(key, (key, "{:.3g}"))[1]
    return fmt.format(value)


def trials_markdown(record: dict, chosen: str) -> str:
    """A Markdown table of the trials of one experiment, the chosen candidate marked.

    Columns: candidate (bold when chosen), what it is, CPU seconds of the fit, the joint MMD² after the last
    network, then each metric in the order of :data:`COLUMNS`.
    """
    trials = record["trials"]
    metrics = [k for k in COLUMNS if any(k in t for t in trials)]
    metrics += sorted({k for t in trials for k in t} - _NOT_METRICS - set(metrics))
    head = ["candidate", "setting", "fit (CPU s)", "MMD² after last network",
            *[COLUMNS.get(k, (k,))[0] for k in metrics]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for t in trials:
        name = f"**{t['candidate']}** (chosen)" if t["candidate"] == chosen else t["candidate"]
        last = t.get("history", {}).get("after_network", [])
        cells = [name, t["why"], f"{t['cpu_seconds']:,}", f"{last[-1]:.2e}" if last else "—",
                 *[_cell(k, t[k]) if k in t else "—" for k in metrics]]
        lines.append("| " + " | ".join(cells) + " |")
    return (f"Fitted on the first {record['n_fit']:,} training images, scored on the next {record['n_val']:,} "
            f"(held out from the trial fits; no test image is used).\n\n" + "\n".join(lines) + "\n")


def show_trials(experiment: str, chosen: str) -> None:
    """Display the trial table of ``experiment`` (or a note saying where it lives when it is not there)."""
    from IPython.display import Markdown, display

    record = load_trials(experiment)
    if record is None:
        display(Markdown(f"*The validation trials of `{experiment}` are recorded in the repository's "
                         f"`book/generated/trials/{experiment}.json`, which this installation does not have.*"))
        return
    display(Markdown(trials_markdown(record, chosen)))


def _meets(metric: str, value: float) -> bool:
    direction, bound = TARGETS[metric]
    return value <= bound if direction == "<=" else value >= bound


def curve_text(record: dict, candidate: str) -> str:
    """Markdown: for each target of :data:`TARGETS`, the CPU time at which the longer fit of ``candidate`` first met
    it on the validation images, or the value reached at the end of the curve and its trend over the last points."""
    trial = next(t for t in record["trials"] if t["candidate"] == candidate)
    curve = trial["curve"]
    lines = []
    for metric, (direction, bound) in TARGETS.items():
        title, fmt = COLUMNS[metric]
        met = next((p for p in curve if _meets(metric, p[metric])), None)
        if met is not None:
            lines.append(f"- {title} {direction.replace('<=', '≤').replace('>=', '≥')} {fmt.format(bound)}: first met "
                         f"after {met['networks']} networks, {met['cpu_seconds'] / 60:.0f} CPU minutes "
                         f"({fmt.format(met[metric])})")
        else:
            last, before = curve[-1], curve[max(0, len(curve) - 3)]
            lines.append(f"- {title} {direction.replace('<=', '≤').replace('>=', '≥')} {fmt.format(bound)}: not met in "
                         f"{last['cpu_seconds'] / 60:.0f} CPU minutes ({last['networks']} networks): "
                         f"{fmt.format(before[metric])} → {fmt.format(last[metric])} over the last "
                         f"{(last['cpu_seconds'] - before['cpu_seconds']) / 60:.0f} minutes")
        if metric == "accuracy" and "accuracy_real" in trial:
            lines[-1] += f"; real images held out from this judge score {fmt.format(trial['accuracy_real'])}"
    return "\n".join(lines) + "\n"


def curve_markdown(record: dict, candidate: str) -> str:
    """A Markdown table of the longer fit of ``candidate``: networks, CPU minutes and each metric, one row per
    scored point (the candidate's own length in bold)."""
    trial = next(t for t in record["trials"] if t["candidate"] == candidate)
    curve = trial["curve"]
    metrics = [k for k in COLUMNS if k in curve[0] and k != "mse_ratio_exact"]
    head = ["networks", "CPU minutes", *[COLUMNS[k][0] for k in metrics]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    own = len(trial["history"]["after_network"])
    for p in curve:
        first = f"**{p['networks']}**" if p["networks"] == own else str(p["networks"])
        lines.append("| " + " | ".join([first, f"{p['cpu_seconds'] / 60:.1f}", *[_cell(k, p[k]) for k in metrics]])
                     + " |")
    return "\n".join(lines) + "\n"


def curve_figure(record: dict, candidate: str):
    """A row of panels: each class-conditional metric of the longer fit of ``candidate`` against CPU minutes on the
    validation images, the targets of :data:`TARGETS` dashed, the candidate's own length marked."""
    import matplotlib.pyplot as plt

    trial = next(t for t in record["trials"] if t["candidate"] == candidate)
    curve = trial["curve"]
    minutes = [p["cpu_seconds"] / 60 for p in curve]
    metrics = ["fid", *TARGETS]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.0 * len(metrics), 2.6), constrained_layout=True)
    for ax, metric in zip(axes, metrics):
        ax.plot(minutes, [p[metric] for p in curve], "o-", ms=3)
        if metric in TARGETS:
            ax.axhline(TARGETS[metric][1], ls="--", c="k", lw=0.8)
        real = {"fid": "fid_real_vs_real", "accuracy": "accuracy_real"}.get(metric)
        if real in trial:  # what real images score: a floor (FID) or a ceiling (accuracy)
            ax.axhline(trial[real], ls="-.", c="tab:green", lw=0.8)
        ax.axvline(trial["cpu_seconds"] / 60, ls=":", c="tab:red", lw=0.8)
        ax.set_title(COLUMNS[metric][0], fontsize=9)
        ax.set_xlabel("CPU minutes (one core)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_yscale("log")
    return fig
