"""The chapter kit: what every chapter of the book does before, around and after its experiments.

A chapter opens with :meth:`Chapter.start` (checks the profile, picks the device, sets the figure style,
shows the run banner, starts the clock), draws every random number from :meth:`Chapter.generator`
streams, trains through :meth:`Chapter.fit` or :meth:`Chapter.fit_experiment` (checkpoints and resume,
:func:`fit_or_resume`) and closes with :meth:`Chapter.finish` (results file, ledger rows, run time)::

    chapter = Chapter.start(profile, device, seed, settings=PROFILES, checkpoint_dir=checkpoint_dir)
    cfg, dev, rng = chapter.settings, chapter.device, chapter.generator
    ...
    chapter.finish(results_path, ledger=ledger, metrics=metrics)

Training with checkpoints: with an empty ``checkpoint_dir``, :func:`fit_or_resume` is ``model.fit``
without a progress bar (the ``cpu`` and ``smoke`` runs of the book). With a folder, each fit writes its
checkpoints to ``checkpoint_dir/<name>`` after every network and, when the chapter is run again (a Colab
disconnect, a killed job), continues from them by itself: finished fits are read back, an interrupted
one resumes, and the numbers equal those of an uninterrupted run with the same seed. In the ``paper``
profile the fit prints a rough estimate of its run time and memory first (:func:`estimate_fit_seconds`)
and shows a tqdm bar per network (MMD², loss).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from cmmd.book.pages import compared_text, evaluation_text, format_number, metric_text, ours_text
from cmmd.book.results import interval_bounds, validate_ledger, write_results
from cmmd.checkpoint import FORMAT_VERSION, atomic_save, data_fingerprint, read_state
from cmmd.experiments import estimate_gpu_memory_gb, get_config, memory_table, summary
from cmmd.experiments.tables import settings_block
from cmmd.flowspec import Schedule
from cmmd.model import CHECKPOINT_NAME, ConditionalMMDFlow, FitHistory
from cmmd.projections import downsample_images
from cmmd.pyramid import PyramidFlow
from cmmd.regression import MMSERegressor, adam_budget, fit_mmse_regressor
from cmmd.runtime import banner, check_profile, footer, format_duration, missing_data_notice, resolve_device

Flow = ConditionalMMDFlow | PyramidFlow  # both are cmmd.samplers.ConditionalSampler
#: Extra flow steps and Adam steps of the timing fits of :func:`estimate_fit_seconds`.
PROBE_STEPS = 8
#: The widest figure (inches) that the book shows at its natural size: 784 px of text column at :data:`FIGURE_DPI`.
MAX_FIGURE_WIDTH = 8.7
#: Resolution of the chapters' figures: 90 dpi keeps the committed notebooks small.
FIGURE_DPI = 90
#: File of a trained MMSE regressor in a fit's checkpoint folder (:meth:`Chapter.fit_regressor`).
REGRESSOR_NAME = "regressor.pt"


# --------------------------------------------------------------------------- one run of a chapter


@dataclass
class Chapter:
    """One run of a chapter: its profile, device, seed and settings, its random streams and its clock.

    Make it with :meth:`start`. ``settings`` is the chapter's own settings for this profile (the entry of
    the dict passed to :meth:`start`); ``checkpoint_dir`` is the chapter's checkpoint folder (``""``: none).
    """

    profile: str
    device: torch.device
    seed: int
    settings: Any = None
    checkpoint_dir: str = ""
    trained_flows: str = ""
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, profile: str, device: str | torch.device, seed: int, *, settings: dict | None = None,
              checkpoint_dir: str = "", trained_flows: str = "", grid: bool = False) -> Chapter:
        """Begin a run: check ``profile``, resolve ``device``, set the figure style, show the banner, start the clock.

        Args:
            profile, device, seed: the notebook's parameters.
            settings: the chapter's settings per profile (``{"smoke": ..., "cpu": ..., "paper": ...}``);
                :attr:`settings` becomes the entry of ``profile``.
            checkpoint_dir: the notebook's ``checkpoint_dir`` parameter, for :meth:`fit`.
            trained_flows: a folder of runs of ``python -m cmmd.train EXPERIMENT --out trained_flows/EXPERIMENT``
                (e.g. trained on a cluster); :meth:`fit_experiment` loads those instead of training. ``""``: the
                environment variable ``CMMD_TRAINED_FLOWS``, else none.
            grid: draw grid lines in the figures (:func:`book_figure_style`).

        Raises:
            ValueError: an unknown profile or an unusable device.
        """
        check_profile(profile)
        chosen = None if settings is None else settings[profile]
        resolved = resolve_device(device)
        book_figure_style(grid=grid)
        banner(profile, resolved)
        trained = trained_flows or os.environ.get("CMMD_TRAINED_FLOWS", "")
        return cls(profile, resolved, int(seed), chosen, checkpoint_dir, trained)

    def stream_seed(self, stream: int) -> int:
        """The seed of random stream ``stream``: ``1000 * seed + stream``, so that runs with different seeds never share one."""
        return 1000 * self.seed + stream

    def generator(self, stream: int) -> torch.Generator:
        """A fresh generator on the chapter's device, seeded with :meth:`stream_seed` (one per experiment or step)."""
        return torch.Generator(device=self.device).manual_seed(self.stream_seed(stream))

    def fit(self, model: Flow, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator, name: str,
            experiment: Any = None) -> float:
        """Fit ``model`` on the pairs (x, y) with :func:`fit_or_resume` under the chapter's checkpoint folder.

        The ``paper`` profile shows the estimate and the progress bars (``verbose``), with the modelled
        training memory of ``experiment`` (an experiment config) when it is given. Returns the seconds taken.
        """
        verbose = self.profile == "paper"
        memory_gb = estimate_gpu_memory_gb(experiment) if verbose and experiment is not None else None
        begin = time.perf_counter()
        fit_or_resume(model, x, y, generator=generator, checkpoint_dir=self.checkpoint_dir, name=name,
                      verbose=verbose, memory_estimate_gb=memory_gb)
        return time.perf_counter() - begin

    def fit_experiment(self, experiment: Any, x: torch.Tensor, y: torch.Tensor, *, name: str, init_stream: int,
                       stream: int, **flow_changes: Any) -> tuple[Flow, float]:
        """Build the learned flow of an experiment config and :meth:`fit` it; returns (model, seconds).

        The networks are initialised from seed :meth:`stream_seed` of ``init_stream`` and the fit draws from
        :meth:`generator` of ``stream``; ``flow_changes`` go to ``experiment.build_flow`` (e.g. ``lr_schedule``).
        With :attr:`trained_flows`, a finished ``cmmd.train`` run of the experiment there is loaded instead (its
        training seconds are returned).
        """
        if self.trained_flows:
            from cmmd.train import trained_for_chapter

            found = trained_for_chapter(self.trained_flows, experiment, self.profile, self.device)
            if found is not None:
                print(f"{name}: loaded the flow trained by cmmd.train from {self.trained_flows}")
                return found[0], float(found[1].get("seconds", 0.0))
        model = experiment.build_flow(init_seed=self.stream_seed(init_stream), device=self.device, **flow_changes)
        seconds = self.fit(model, x, y, generator=self.generator(stream), name=name, experiment=experiment)
        return model, seconds

    def fit_experiments(self, pairs: dict[str, tuple[Any, torch.Tensor, torch.Tensor]], *, prefix: str,
                        titles: dict[str, str] | None = None, init_stream: int = 20, stream: int = 30,
                        **flow_changes: Any) -> tuple[dict[str, Flow], dict[str, float]]:
        """:meth:`fit_experiment` for each ``key → (experiment, x, y)`` in order, showing each :func:`fit_summary`.

        The i-th fit is named ``<prefix>-<key>`` (its checkpoint folder), initialises its networks from stream
        ``init_stream + i`` and draws from stream ``stream + i``. Returns ``(models, seconds)`` by key.
        """
        from IPython.display import Markdown, display

        models, seconds = {}, {}
        for i, (key, (experiment, x, y)) in enumerate(pairs.items()):
            models[key], seconds[key] = self.fit_experiment(experiment, x, y, name=f"{prefix}-{key}",
                                                            init_stream=init_stream + i, stream=stream + i,
                                                            **flow_changes)
            display(Markdown(fit_summary((titles or {}).get(key, key), models[key], seconds[key])))
        return models, seconds

    def fit_regressor(self, experiment: Any, x: torch.Tensor, y: torch.Tensor, *, name: str, init_stream: int,
                      stream: int, steps: int | None = None, lr_schedule: str = "cosine") -> tuple[MMSERegressor, float]:
        """Train the MMSE regressor of an experiment (:func:`cmmd.regression.fit_mmse_regressor`); (regressor, s).

        The fair baseline of a posterior mean [method §6]: a fresh network of the experiment's architecture
        (initialised from :meth:`stream_seed` of ``init_stream``), trained with the squared error on the flow's
        own pairs (x, y), at the flow's batch size and learning rate, for ``steps`` Adam steps (default: the
        flow's whole budget, :func:`cmmd.regression.adam_budget`), drawing from :meth:`generator` of ``stream``.
        With a checkpoint folder the trained weights are saved to ``checkpoint_dir/<name>/regressor.pt`` and
        read back on the next run (safely: tensors only, checksummed) if they belong to the same pairs.
        """
        config = experiment.flow_config()
        steps = adam_budget([experiment.flow_config(level) for level in range(len(experiment.levels))]) \
            if steps is None else steps
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.stream_seed(init_stream))
            net = experiment.network()
        folder = checkpoint_folder(self.checkpoint_dir, name)
        path = None if folder is None else folder / REGRESSOR_NAME
        fingerprint = data_fingerprint(x.flatten(1), y.flatten(1))
        begin = time.perf_counter()
        if path is not None and path.is_file():
            state = read_state(path, map_location=x.device, what="a trained MMSE regressor")
            if state.get("data") == fingerprint and state.get("steps") == steps:
                net.load_state_dict(state["weights"])
                net.to(device=x.device, dtype=x.dtype).eval()
                return MMSERegressor(net, tuple(x.shape[1:]), tuple(y.shape[1:]), "zeros", steps,
                                     float(state["train_loss"])), time.perf_counter() - begin
        regressor = fit_mmse_regressor(net, x, y, steps=steps, batch_size=config.batch_size, lr=config.lr,
                                       generator=self.generator(stream), lr_schedule=lr_schedule,
                                       grad_clip=config.grad_clip)
        if path is not None:
            atomic_save(dict(format=FORMAT_VERSION, kind="mmse-regressor", data=fingerprint, steps=steps,
                             train_loss=regressor.train_loss, weights=regressor.net.state_dict()), path)
        return regressor, time.perf_counter() - begin

    def show_settings(self, experiments: Sequence[str], *, memory_of: Sequence[str] = ()) -> tuple[dict, dict]:
        """Show the settings of ``experiments`` in this profile beside the paper's, and the paper's GPU memory.

        The memory table covers ``experiments`` and then ``memory_of`` (experiments this run may skip).
        Returns ``(table, memory)``: ``table[experiment][profile]`` is the config summary of the settings
        table, ``memory[experiment]`` the GiB of :func:`cmmd.experiments.estimate_gpu_memory_gb` for ``paper``.
        """
        from IPython.display import Markdown, display

        configs = {e: {p: get_config(e, p) for p in (self.profile, "paper")} for e in experiments}
        table = {e: {p: summary(c) for p, c in by_profile.items()} for e, by_profile in configs.items()}
        blocks = [settings_block(configs[e][self.profile], rows[self.profile], rows["paper"])
                  for e, rows in table.items()]
        display(Markdown("\n\n".join(blocks) + "\n"))  # each summary computed once (the memory model is slow)
        memory = {e: estimate_gpu_memory_gb(get_config(e, "paper")) for e in dict.fromkeys([*experiments, *memory_of])}
        display(Markdown(memory_table(memory)))
        return table, memory

    def ledger_row(self, experiment: str, metric: str, ours: float, *, higher_is_better: bool | None,
                   paper: float | None = None, baseline: tuple[str, float] | None = None, n: int | None = None,
                   ours_ci95: Any = None, difference_ci95: Any = None, tuned_on: str = "none",
                   expected: tuple[str, float, float] | dict | None = None) -> dict:
        """A row of the reproduction ledger for this run's profile (see :func:`cmmd.book.results.validate_ledger`).

        Args:
            experiment, metric: lowercase hyphenated ids.
            ours: our value.
            higher_is_better: the direction of a score; None for a quantity that is not one (give ``expected``).
            paper: the paper's number, if it states one.
            baseline: ``(name, value)`` of the comparison method, or None.
            n: the number of evaluation items; taken from the ``.n`` of the intervals when they have one.
            ours_ci95: a 95% interval of ``ours`` over the items: ``(low, high)`` or an object with
                ``.low``/``.high`` such as a :class:`cmmd.statistics.Interval`.
            difference_ci95: a 95% interval of ours - baseline, paired over the same items (needs ``baseline``).
            tuned_on: what the settings were chosen on: ``"validation"`` or ``"none"`` (fixed in advance).
            expected: ``(name, low, high)`` or ``{"name", "low", "high"}``: the range the value should fall in.

        The row states no ``status``: :func:`cmmd.book.results.validate_ledger` derives it from the intervals.

        Raises:
            ValueError: ``difference_ci95`` without ``baseline``, or intervals of different sizes ``n``.
        """
        sizes = {int(i.n) for i in (ours_ci95, difference_ci95) if getattr(i, "n", None) is not None}
        if n is not None:
            sizes.add(n)
        if len(sizes) > 1:
            raise ValueError(f"{experiment}/{metric}: the intervals and n count different items {sorted(sizes)}: "
                             "compute both intervals over the same evaluation items and pass that n")
        if difference_ci95 is not None and baseline is None:
            raise ValueError(f"{experiment}/{metric}: difference_ci95 is an interval of ours - baseline: pass "
                             "baseline=(name, value) with it")
        base = None if baseline is None else {"name": baseline[0], "value": baseline[1]}
        if base is not None and difference_ci95 is not None:
            base["difference_ci95"] = interval_bounds(difference_ci95, f"{experiment}/{metric} difference_ci95")
        if expected is not None and not isinstance(expected, dict):
            if not isinstance(expected, (tuple, list)) or len(expected) != 3:
                raise ValueError(f"{experiment}/{metric}: expected must be (name, low, high) or a dict with "
                                 f"those keys, got {expected!r}")
            expected = dict(zip(("name", "low", "high"), expected))
        return dict(experiment=experiment, metric=metric, ours=ours, paper=paper, baseline=base,
                    higher_is_better=higher_is_better, profile=self.profile, n=sizes.pop() if sizes else None,
                    ours_ci95=interval_bounds(ours_ci95, f"{experiment}/{metric} ours_ci95"), tuned_on=tuned_on,
                    expected=expected)

    def save_results(self, results_path: str, *, ledger: list[dict], metrics: dict) -> None:
        """Write the results file (:func:`cmmd.book.results.write_results`) and print the ledger rows."""
        write_results(results_path, ledger=ledger, metrics=metrics)
        print(ledger_text(ledger))

    def footer(self) -> None:
        """Show the run time since :meth:`start` and the hardware (:func:`cmmd.runtime.footer`)."""
        footer(time.perf_counter() - self.started, self.device)

    def finish(self, results_path: str, *, ledger: list[dict], metrics: dict) -> None:
        """End the chapter: :meth:`save_results`, then :meth:`footer`."""
        self.save_results(results_path, ledger=ledger, metrics=metrics)
        self.footer()


def ledger_text(ledger: Sequence[dict]) -> str:
    """Ledger rows as an aligned plain-text table: ours with its interval, the paper's number, what the row
    is compared with (baseline, difference and its interval, or an expected range), how it was measured
    (n, tuning, profile) and the status derived from the intervals (:func:`cmmd.book.pages.ledger_status`)."""
    rows = validate_ledger(ledger)
    lines = [("experiment", "metric", "ours [95% CI]", "paper", "compared with", "measured", "status")]
    for r in rows:
        lines.append((r["experiment"], metric_text(r), ours_text(r), format_number(r["paper"]), compared_text(r),
                      evaluation_text(r, markdown=False), r["status"]))
    widths = [max(len(line[k]) for line in lines) for k in range(6)]
    aligned = [[cell.rjust(w) if k in (2, 3) else cell.ljust(w) for k, (cell, w) in enumerate(zip(line, widths))]
               for line in lines]  # numbers right-aligned
    return "\n".join("  ".join(cells) + "  " + line[6] for cells, line in zip(aligned, lines))


def history_table(flow: Flow | FitHistory) -> str:
    """The training history of a fitted flow (or a :class:`~cmmd.model.FitHistory`) as a Markdown table.

    One row per network: the flow steps T_l it learned, the joint MMD² (sliced estimate) between the
    particles and the training pairs right after the flow and after the particles were replaced by the
    network's output (the gap is the network's error), and its final training loss. A pyramid adds the
    level of each network (0: the coarsest).
    """
    history = flow if isinstance(flow, FitHistory) else flow.history
    levels = flow.level_of_network() if isinstance(flow, PyramidFlow) else None
    head = ["network", "flow steps T_l", "MMD² after flow", "MMD² after network", "training loss"]
    if levels is not None:
        head.insert(1, "level")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    rows = zip(history.flow_steps, history.mmd2_after_flow, history.mmd2_after_network, history.train_loss)
    for index, (steps, after_flow, after_network, loss) in enumerate(rows):
        cells = [str(index + 1), f"{steps:,}", f"{after_flow:.3e}", f"{after_network:.3e}", f"{loss:.3e}"]
        if levels is not None:
            cells.insert(1, str(levels[index]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def descent_text(history: FitHistory) -> str:
    """Markdown: whether each flow segment l ≥ 2 lowered the MMD² it started from (the MMD² after network l − 1)
    and whether the MMD² after the networks fell over the sequence, naming the networks where it did not."""
    after_flow, after_network = history.mmd2_after_flow, history.mmd2_after_network
    if len(after_network) < 2:
        return "One network: no segment starts from a recorded MMD²."
    raised = [l + 1 for l in range(1, len(after_flow)) if after_flow[l] >= after_network[l - 1]]
    rose = [l + 1 for l in range(1, len(after_network)) if after_network[l] >= after_network[l - 1]]
    segments = len(after_flow) - 1
    first = (f"Each of the {segments} flow segments after the first lowered the MMD² it started from" if not raised
             else f"{segments - len(raised)} of {segments} flow segments after the first lowered the MMD² they "
                  f"started from (segment{'s' * (len(raised) > 1)} {', '.join(map(str, raised))} raised it)")
    second = ("the MMD² after the networks fell at every network" if not rose
              else f"the MMD² after the networks rose at network{'s' * (len(rose) > 1)} {', '.join(map(str, rose))}")
    return f"{first}; {second}."


def fit_summary(title: str, flow: Flow, seconds: float) -> str:
    """Markdown: how many networks ``flow`` trained in how long, its :func:`history_table` and
    :func:`descent_text`."""
    where = f" over {len(flow.levels)} resolutions" if isinstance(flow, PyramidFlow) else ""
    return (f"**{title}**: {len(flow.networks)} networks{where} trained in {format_duration(seconds)}.\n\n"
            + history_table(flow) + "\n\n" + descent_text(flow.history))


# --------------------------------------------------------------------------- training with checkpoints


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
    probe.config = replace(flow.config, schedule=Schedule.constant(1, steps=flow_steps, momentum=flow.config.schedule.momenta[0]),
                           train_steps=adam_steps)
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
        total += per_flow_step * cfg.schedule.total_steps + cfg.n_networks * (per_adam_step * cfg.train_steps + overhead)
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
            :func:`cmmd.experiments.estimate_gpu_memory_gb`), if known.

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


# --------------------------------------------------------------------------- figures and data


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
