"""What every training chapter of the book does around ``fit``: checkpoints, resume, progress, a cost estimate.

A chapter that trains calls :func:`fit_or_resume` instead of ``model.fit``. With an empty
``checkpoint_dir`` it is ``model.fit`` without a progress bar (the ``cpu`` and ``smoke`` runs of the
book). With a folder, each fit writes its checkpoints to ``checkpoint_dir/<name>`` after every network
and, when the chapter is run again (a Colab disconnect, a killed job), continues from them by itself:
finished fits are read back, an interrupted one resumes, and the numbers equal those of an
uninterrupted run with the same seed. In the ``paper`` profile the fit prints a rough estimate of its run
time and memory first (:func:`estimate_fit_seconds`) and shows a tqdm bar per network (MMD², loss).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from cmmd.model import CHECKPOINT_NAME, ConditionalMMDFlow
from cmmd.projections import downsample_images
from cmmd.pyramid import PyramidFlow
from cmmd.runtime import format_duration, missing_data_notice

Flow = ConditionalMMDFlow | PyramidFlow
#: Extra flow steps and Adam steps of the timing fits of :func:`estimate_fit_seconds`.
PROBE_STEPS = 8


def checkpoint_folder(checkpoint_dir: str, name: str) -> Path | None:
    """The folder of one fit's checkpoints, ``checkpoint_dir/name``; ``None`` when ``checkpoint_dir`` is empty.

    Raises:
        ValueError: ``name`` is empty or is a path (it must be one folder name, unique within the chapter).
    """
    if not name or name in (".", "..") or Path(name).name != name:
        raise ValueError(f"name must be one folder name such as 'mnist', got {name!r}")
    return Path(checkpoint_dir).expanduser() / name if checkpoint_dir else None


def has_checkpoint(folder: Path | None) -> bool:
    """Whether ``folder`` holds a checkpoint of a flow (``checkpoint.pt``) or of a pyramid level (``level-k/``)."""
    return folder is not None and folder.is_dir() and any(folder.rglob(CHECKPOINT_NAME))


def _levels_and_targets(model: Flow, x: torch.Tensor) -> list[tuple[ConditionalMMDFlow, torch.Tensor]]:
    """Each single-resolution flow of ``model`` with the training images at its resolution."""
    if isinstance(model, PyramidFlow):
        return [(flow, downsample_images(x, x.shape[-1] // flow.x_shape[-1])) for flow in model.levels]
    return [(model, x)]


def _probe_seconds(flow: ConditionalMMDFlow, x: torch.Tensor, y: torch.Tensor, flow_steps: int, adam_steps: int) -> float:
    """Wall time of fitting one network to ``flow_steps`` flow steps with ``adam_steps`` Adam steps (a throwaway copy)."""
    probe = copy.copy(flow)  # shares the network template and the gradient; fit gives it its own networks
    probe.config = replace(flow.config, n_networks=1, first_steps=flow_steps, train_steps=adam_steps)
    generator = torch.Generator(device=x.device).manual_seed(0)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    probe.fit(x, y, generator=generator, progress=False)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def estimate_fit_seconds(model: Flow, x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Rough run time of ``model.fit(x, y)``, from timing three one-network fits of each level.

    One network costs about :math:`t(T, K) = aT + bK + c` for T flow steps and K Adam steps (c: applying
    the network to the particles and the bookkeeping). Timing t(1, 1), t(1 + k, 1) and t(1, 1 + k) with
    k = :data:`PROBE_STEPS` (after a warm-up fit) gives a, b and c; the estimate is
    :math:`\sum_l (aT_l + bK + c)` over the schedule of every level. It ignores what changes with the
    network index and is only as steady as the machine (other processes on the same cores inflate it),
    so take it to within a factor of about two.
    """
    total, k = 0.0, PROBE_STEPS
    for flow, targets in _levels_and_targets(model, x):
        _probe_seconds(flow, targets, y, 1, 1)  # warm-up: allocator, kernels, caches
        t11 = _probe_seconds(flow, targets, y, 1, 1)
        per_flow_step = max(_probe_seconds(flow, targets, y, 1 + k, 1) - t11, 0.0) / k
        per_adam_step = max(_probe_seconds(flow, targets, y, 1, 1 + k) - t11, 0.0) / k
        overhead = max(t11 - per_flow_step - per_adam_step, 0.0)
        cfg = flow.config
        total += per_flow_step * sum(cfg.flow_steps()) + cfg.n_networks * (per_adam_step * cfg.train_steps + overhead)
    return total


def fit_or_resume(
    model: Flow,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
    checkpoint_dir: str = "",
    name: str,
    verbose: bool = False,
    memory_estimate_gb: float | None = None,
) -> Flow:
    """Fit ``model`` on the pairs (x, y), with checkpoints under ``checkpoint_dir/name`` and automatic resume.

    Args:
        model: an untrained :class:`ConditionalMMDFlow` or :class:`PyramidFlow` (e.g. from ``build_flow``).
        x, y: the training pairs, (N, *x_shape) and (N, *y_shape), on the model's device.
        generator: the fit's random stream; after a resume it continues exactly as in an uninterrupted run.
        checkpoint_dir: the chapter's checkpoint folder; ``""`` trains without checkpoints.
        name: this fit's subfolder, unique within the chapter (e.g. the data set).
        verbose: print a run-time estimate first and show a progress bar (the chapters pass
            ``profile == "paper"``).
        memory_estimate_gb: a model of the training memory to print with the estimate (the experiment's
            :func:`cmmd.configs.estimate_gpu_memory_gb`), if known.

    Returns:
        ``model``, fitted.
    """
    folder = checkpoint_folder(checkpoint_dir, name)
    resume = has_checkpoint(folder)
    if verbose:
        if resume:
            print(f"{name}: resuming from the checkpoints in {folder}")
        else:
            _print_estimate(model, x, y, name, memory_estimate_gb)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    return model.fit(x, y, generator=generator, checkpoint_dir=folder, resume=resume, progress=verbose)


def _print_estimate(model: Flow, x: torch.Tensor, y: torch.Tensor, name: str, memory_gb: float | None) -> None:
    """Print the run-time estimate of fitting ``model`` and, where known, its memory."""
    if x.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(x.device)
    seconds = estimate_fit_seconds(model, x, y)
    n_networks = sum(flow.config.n_networks for flow, _ in _levels_and_targets(model, x))
    line = f"{name}: {n_networks} networks, estimated run time {format_duration(seconds)} (rough, within ~2x)"
    if memory_gb is not None:
        line += f"; modelled training memory {memory_gb:.1f} GiB"
    if x.device.type == "cuda":
        line += f"; peak GPU memory of the timing fits {torch.cuda.max_memory_allocated(x.device) / 2**30:.1f} GiB"
    print(line, flush=True)


#: The widest figure (inches) that the book shows at its natural size: 784 px of text column at :data:`FIGURE_DPI`.
MAX_FIGURE_WIDTH = 8.7
#: Resolution of the chapters' figures: 90 dpi keeps the committed notebooks small.
FIGURE_DPI = 90


def book_figure_style(*, grid: bool = False) -> None:
    """Matplotlib settings of every chapter: 90 dpi, no text below 10 pt.

    At 90 dpi a point is 1.25 px, so 10 pt text is 12.5 px (9.4 CSS points) when the figure is shown at its
    natural size, which the book does up to :data:`MAX_FIGURE_WIDTH` inches; wider figures are scaled down.
    """
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": FIGURE_DPI, "savefig.dpi": FIGURE_DPI, "font.size": 10, "axes.titlesize": 10,
        "axes.labelsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10,
        "figure.titlesize": 11, "axes.grid": grid, "grid.alpha": 0.3,
    })


def load_splits(
    load: Callable[..., object],
    requests: dict[str, tuple[str, int | None]],
    *,
    download: bool,
    title: str,
    optional: bool = False,
    without: str = "",
) -> dict[str, object] | None:
    """Load several splits of one data set, or, if it is missing and the chapter can do without it, say so.

    Args:
        load: the data set's loader, ``load(split, n=..., download=...)`` (e.g. :func:`cmmd.data.load_mnist`).
        requests: name → (split, n), e.g. ``{"train": ("train", 4000), "test": ("test", 1000)}``.
        download: allow the loader's download step.
        title: the data set's name in the notice.
        optional: when the data set is missing (``FileNotFoundError``), show a warning box and return
            ``None`` instead of raising; a chapter that needs the data set leaves it ``False`` and stops
            with the loader's message (what is missing, how to get it).
        without: what the chapter shows without it, for the notice.

    Returns:
        name → the loaded data set, or ``None`` (optional and missing).
    """
    try:
        return {name: load(split, n=n, download=download) for name, (split, n) in requests.items()}
    except FileNotFoundError as error:
        if not optional:
            raise
        missing_data_notice(title, error, without)
        return None
