"""The settings of experiments as Markdown tables for the chapters: the paper's values and what a profile changes.

A chapter shows them with ``IPython.display.Markdown``; the book renders the tables, which wrap to the page's
width (a text block of the same rows ran off the screen of a phone).
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from cmmd.experiments.memory import estimate_gpu_memory_gb
from cmmd.experiments.spec import ExperimentConfig
from cmmd.nets import count_parameters


def summary(config: ExperimentConfig) -> dict[str, object]:
    """The settings as printable rows, label → value: the task, the flow (per level for pyramids), the networks,
    and the GPU memory estimate of training (:func:`cmmd.experiments.memory.estimate_gpu_memory_gb`)."""
    with torch.random.fork_rng(devices=[]):  # building the UNet to count it must not move the global RNG
        parameters = count_parameters(config.network())
    schedules = config.schedules()
    rows: dict[str, object] = {**config.task.rows(config.x_shape, config.y_shape), "training pairs N": config.n_train}
    for k, (level, schedule) in enumerate(zip(config.levels, schedules)):
        where = f" ({level.size}×{level.size})" if len(config.levels) > 1 else ""
        rows[f"projections{where}"] = str(level.projection)
        rows[f"step size τ{where}"] = level.step_size
        rows[f"networks, steps, momentum{where}"] = str(schedule)
    rows.update({
        "networks L": config.total_networks,
        "flow steps in total": sum(s.total_steps for s in schedules),
        "Adam steps per network": config.train_steps,
        "batch": config.batch_size,
        "learning rate": config.lr,
        "gradient clipping": config.grad_clip,
        "UNet widths": str(config.net),
        "UNet parameters": parameters,
        "GPU memory estimate (GiB)": round(estimate_gpu_memory_gb(config), 2),
    })
    return rows


def settings_table(configs: Sequence[ExperimentConfig], papers: Sequence[ExperimentConfig]) -> str:
    """One Markdown table per experiment: every setting of the paper, and beside it only what the profile changes
    (the rows its :class:`~cmmd.experiments.spec.Changes` move; the others show "·"), followed by why.

    Args:
        configs: the experiments in the profile of the run.
        papers: the same experiments in profile ``paper`` (same order).
    """
    return "\n\n".join(settings_block(config, summary(config), summary(paper))
                       for config, paper in zip(configs, papers)) + "\n"


def settings_block(config: ExperimentConfig, ours: dict[str, object], theirs: dict[str, object]) -> str:
    """The table of :func:`settings_table` for one experiment, from its :func:`summary` rows in the run's profile
    (``ours``) and in profile ``paper`` (``theirs``), for a caller that already holds them."""
    lines = [f"**{config.experiment}**", ""]
    if config.profile == "paper":
        lines += ["| setting | profile `paper` |", "|---|---|"]
        lines += [f"| {_markdown(k)} | {_markdown(_cell(v))} |" for k, v in theirs.items()]
        return "\n".join(lines)
    lines += [f"| setting | profile `paper` | changed in profile `{config.profile}` |", "|---|---|---|"]
    for label in dict.fromkeys([*theirs, *ours]):
        mine, paper_value = ours.get(label, "—"), theirs.get(label, "—")
        changed = _markdown(_cell(mine)) if _cell(mine) != _cell(paper_value) else "·"
        lines.append(f"| {_markdown(label)} | {_markdown(_cell(paper_value))} | {changed} |")
    lines += ["", "· : as in profile `paper`."]
    if config.changes is not None:
        lines += ["", f"*Why `{config.profile}` differs:* {_cited(config.changes.why)}"]
    return "\n".join(lines)


def memory_table(estimates: dict[str, float], *, gpu_gb: float = 16.0) -> str:
    """A Markdown table of training-memory estimates in GiB (experiment → :func:`estimate_gpu_memory_gb` of its
    ``paper`` settings) and whether each fits a GPU of ``gpu_gb`` GB with 1 GB to spare (Colab's 16 GB T4
    shows 15 to torch)."""
    lines = [f"| experiment (`paper` settings) | training memory, estimated (GiB) | fits a {gpu_gb:g} GB GPU |",
             "|---|---:|---|"]
    lines += [f"| {name} | {gb:.2f} | {'yes' if gb < gpu_gb - 1 else 'no'} |" for name, gb in estimates.items()]
    return "\n".join(lines) + "\n"


def _markdown(text: str) -> str:
    """A table cell's text with Markdown's table and emphasis characters escaped."""
    return "".join("\\" + ch if ch in "|*_`<" else ch for ch in str(text))


def _cell(value: object) -> str:
    if value is None:
        return "none"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _cited(text: str) -> str:
    """``[method §N]`` in a reason becomes a link to that section of the book's method page (MyST ``{ref}``)."""
    return re.sub(r"\[method §(\d)\]", lambda m: f"({{ref}}`method §{m[1]} <method-{m[1]}>`)", text)
