"""``python -m cmmd.train EXPERIMENT --profile P --out DIR``: train a registered experiment outside the book.

Loads the experiment's training pairs as its chapter does (offline: ``download=False``), builds its flow with
``ExperimentConfig.build_flow`` and fits it with a progress bar, checkpoints after every network in
``DIR/checkpoints`` (written atomically) and ``--resume`` to continue an interrupted run to the same networks.
The trained flow goes to ``DIR/flow.pt`` (:meth:`cmmd.model.ConditionalMMDFlow.save`, or the pyramid's), what
ran to ``DIR/run.json``; :func:`load_trained` reads them back.

Seeds and the learning-rate schedule follow the chapters (:meth:`cmmd.book.kit.Chapter.stream_seed`): the
networks are initialised from 1000·seed + 20, the fit draws from 1000·seed + 30, and the schedule is cosine in
the reduced profiles (constant, the paper's, in ``paper``), so one process gives exactly the networks of
``Chapter.fit_experiment(exp, x, y, init_stream=20, stream=30, lr_schedule=...)`` on the same pairs.

On K processes (``torchrun --nproc-per-node K -m cmmd.train ...``) the same run is split over the ranks by
:mod:`cmmd.distributed` (NCCL on CUDA, one GPU per process; gloo on the CPU): equal to one process up to the
order of float sums, not bit for bit. ``--stop-after L`` ends a run after L more networks (checkpointed), e.g.
for jobs with a time limit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from cmmd.data import (load_celeba, load_cifar10, load_fashion_mnist, load_lodopab, load_materials, load_mnist,
                       random_ellipse_phantoms)
from cmmd.distributed import Cluster, StopAfter, TrainingStopped, start_cluster, stop_cluster, wrap_model
from cmmd.experiments import EXPERIMENTS, PROFILES, ExperimentConfig, get_config
from cmmd.model import ConditionalMMDFlow
from cmmd.operators import ParallelBeamRadon
from cmmd.pyramid import PyramidFlow
from cmmd.runtime import resolve_device

FLOW_NAME = "flow.pt"
RUN_NAME = "run.json"
CHECKPOINTS = "checkpoints"
INIT_STREAM, FIT_STREAM = 20, 30
#: the last two SiC training slices are chapter 6's test images: never trained on
MATERIALS_TEST_SLICES = 2
#: chapter 7's streams of the training phantoms and of their noise, per experiment
CT_STREAMS = {"ct-lowdose": (10, 11), "ct-limited-angle": (12, 13)}


class UsageError(ValueError):
    """A bad command line or a DIR that does not fit the request; the message says what to do."""


# ---------------------------------------------------------------------- data, as the chapters load it
def stream(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The chapters' random stream ``index``: a generator on ``device`` seeded with 1000·seed + index."""
    return torch.Generator(device=device).manual_seed(1000 * seed + index)


def _first(dataset, n: int, what: str) -> torch.Tensor:
    if len(dataset) < n:
        raise UsageError(f"{what}: the profile trains on {n:,} pairs but only {len(dataset):,} images were found "
                         f"({dataset.source}); put the full data set in $CMMD_DATA_DIR (README.md, 'Data') or "
                         f"use a smaller profile")
    return dataset.images[:n]


def _mnist_family(exp: ExperimentConfig, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Chapters 4 and 5: the first N training images; y = 10·one-hot(label) or the observed bottom rows."""
    family = exp.experiment.split("-")[0]
    load = {"mnist": load_mnist, "fashionmnist": load_fashion_mnist, "cifar10": load_cifar10}[family]
    data = load("train", n=exp.n_train, download=False)
    x = _first(data, exp.n_train, exp.experiment).to(device)
    if exp.experiment.endswith("classcond"):
        return x, exp.operator().encode(data.labels[: exp.n_train].to(device))
    return x, exp.operator()(x)


def _celeba(exp: ExperimentConfig, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Chapter 6: the first N CelebA faces, observed by bicubic ×1/4 plus noise (stream 60)."""
    data = load_celeba("train", n=exp.n_train, size=exp.x_shape[-1], download=False)
    x = _first(data, exp.n_train, exp.experiment).to(device)
    return x, exp.observe(x, generator=stream(seed, 60, device))


def _materials(exp: ExperimentConfig, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Chapter 6: N tiles spread evenly over the training slices (not the two test slices), observed by the
    task's blur and stride, noise from stream 10."""
    slices = load_materials("train", download=False)
    task = exp.task
    tiles, observed = task.tile_pairs(slices.images[: len(slices) - MATERIALS_TEST_SLICES], exp.x_shape[1])
    if len(tiles) < exp.n_train:
        raise UsageError(f"{exp.experiment}: {len(tiles)} tiles but the profile trains on {exp.n_train}")
    chosen = torch.arange(len(tiles))[:: len(tiles) // exp.n_train][: exp.n_train]
    return tiles[chosen].to(device), task.add_noise(observed[chosen].to(device), generator=stream(seed, 10, device))


def _ct(exp: ExperimentConfig, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Chapter 7: random ellipse phantoms (``paper``: the first N LoDoPaB-CT training images inside the detector's
    disc), their noisy sinograms and y = the FBP image."""
    images_stream, noise_stream = CT_STREAMS[exp.experiment]
    size = exp.x_shape[1]
    if exp.profile == "paper":
        images = _first(load_lodopab("train", n=exp.n_train, download=False), exp.n_train, exp.experiment)
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                     antialias=True).clamp(0, 1)
        x = (images * ParallelBeamRadon(size, 1).circle_mask(images)).to(device)
    else:
        x = random_ellipse_phantoms(exp.n_train, size, generator=stream(seed, images_stream, device)).to(device)
    return x, exp.task.condition(exp.observe(x, generator=stream(seed, noise_stream, device)), exp.x_shape)


LOADERS: dict[str, Callable[[ExperimentConfig, int, torch.device], tuple[torch.Tensor, torch.Tensor]]] = {
    "mnist": _mnist_family, "fashionmnist": _mnist_family, "cifar10": _mnist_family, "celeba": _celeba,
    "materials": _materials, "ct": _ct,
}


def training_pairs(exp: ExperimentConfig, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pairs (x (N, *x_shape), y (N, *y_shape)) of ``exp`` on ``device``, offline.

    Raises:
        UsageError: the data set is not on this machine (the message names every way to get it).
    """
    try:
        return LOADERS[exp.experiment.split("-")[0]](exp, seed, device)
    except FileNotFoundError as error:
        raise UsageError(f"{exp.experiment}: the training data are not on this machine (cmmd.train never "
                         f"downloads).\n{error}\nDownload them once, e.g. in Python with the loader named above "
                         f"and download=True, or point $CMMD_DATA_DIR at a copy.") from None


# ---------------------------------------------------------------------- the run
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cmmd.train", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help=f"one of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--profile", required=True, help=f"one of: {', '.join(PROFILES)}")
    parser.add_argument("--out", required=True, help="folder for checkpoints/, flow.pt and run.json")
    parser.add_argument("--resume", action="store_true", help="continue the run whose checkpoints are in --out")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (torchrun: each rank takes its GPU)")
    parser.add_argument("--seed", type=int, default=0, help="the chapters' seed (streams 1000·seed + k)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None,
                        help="the networks' learning-rate schedule; default as chapters 4-7: cosine in the smoke "
                             "and cpu profiles, the paper's constant in paper")
    parser.add_argument("--stop-after", type=int, default=None, metavar="L",
                        help="stop after L more networks (checkpointed); --resume continues")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def check_request(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment's config, after checking the arguments and the folder ``--out`` (before any work)."""
    if args.experiment not in EXPERIMENTS:
        raise UsageError(f"unknown experiment {args.experiment!r}; choose one of: {', '.join(EXPERIMENTS)}")
    if args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}; choose one of: {', '.join(PROFILES)}")
    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError(f"--stop-after must be a number of networks >= 1, got {args.stop_after}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder")
    checkpoints = out / CHECKPOINTS
    started = checkpoints.is_dir() and any(checkpoints.rglob("checkpoint.pt"))
    if args.resume and not started:
        raise UsageError(f"--resume: no checkpoint in {checkpoints}; start the run without --resume")
    if not args.resume and (started or (out / FLOW_NAME).exists()):
        raise UsageError(f"{out} already holds a run ({'checkpoints' if started else FLOW_NAME}); pass --resume to "
                         f"continue it, or choose another --out (nothing was changed)")
    if args.resume and (out / RUN_NAME).is_file():
        _check_same_run(json.loads((out / RUN_NAME).read_text()), args)
    return get_config(args.experiment, args.profile)


def _check_same_run(started: dict[str, Any], args: argparse.Namespace) -> None:
    """``--resume`` must repeat what the interrupted run was started with."""
    wanted = {"experiment": args.experiment, "profile": args.profile, "seed": args.seed,
              "lr_schedule": lr_schedule(args)}
    differ = [f"{key} {started.get(key)!r} (asked: {value!r})" for key, value in wanted.items()
              if started.get(key) != value]
    if differ:
        raise UsageError(f"--resume: the run in {args.out} was started with " + ", ".join(differ)
                         + "; resume it with the same arguments")


def lr_schedule(args: argparse.Namespace) -> str:
    """``--lr-schedule``, or the chapters' choice: ``cosine`` in the reduced profiles, ``constant`` (the paper's)."""
    if args.lr_schedule is not None:
        return args.lr_schedule
    return "constant" if args.profile == "paper" else "cosine"


def build(exp: ExperimentConfig, args: argparse.Namespace, cluster: Cluster) -> ConditionalMMDFlow | PyramidFlow:
    """The experiment's untrained flow, initialised as the chapters do, prepared for ``cluster``."""
    model = exp.build_flow(init_seed=1000 * args.seed + INIT_STREAM, device=cluster.device,
                           lr_schedule=lr_schedule(args))
    return wrap_model(model, cluster, StopAfter(args.stop_after))


def train(exp: ExperimentConfig, args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    """Fit, then (rank 0) save the flow and the run record; returns the record (``finished`` False when stopped).
    Every rank calls it with the same arguments."""
    x, y = training_pairs(exp, args.seed, cluster.device)
    model = build(exp, args, cluster)
    out = Path(args.out)
    record = {"experiment": exp.experiment, "profile": exp.profile, "seed": args.seed, "lr_schedule": lr_schedule(args),
              "processes": cluster.world_size, "device": str(cluster.device), "torch": torch.__version__,
              "networks": 0, "finished": False, "seconds": 0.0}
    if cluster.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_NAME).write_text(json.dumps(record, indent=2))
    begin = time.perf_counter()
    try:
        model.fit(x, y, generator=stream(args.seed, FIT_STREAM, cluster.device), checkpoint_dir=out / CHECKPOINTS,
                  resume=args.resume, progress=cluster.is_main and not args.quiet)
        record["finished"] = True
    except TrainingStopped:
        pass
    record.update(networks=len(model.networks), seconds=time.perf_counter() - begin)
    if cluster.is_main:
        if record["finished"]:
            model.save(out / FLOW_NAME)
        (out / RUN_NAME).write_text(json.dumps(record, indent=2))
    cluster.barrier()
    return record


def load_trained(out: str | Path, *, map_location: str | torch.device = "cpu") -> ConditionalMMDFlow | PyramidFlow:
    """The flow that ``python -m cmmd.train`` wrote to ``out`` (its networks' architecture from ``run.json``)."""
    out = Path(out)
    if not (out / FLOW_NAME).is_file() or not (out / RUN_NAME).is_file():
        raise FileNotFoundError(f"{out} holds no finished run of cmmd.train ({FLOW_NAME} and {RUN_NAME}); finish it "
                                f"with --resume")
    run = json.loads((out / RUN_NAME).read_text())
    exp = get_config(run["experiment"], run["profile"])
    with torch.random.fork_rng(devices=[]):  # the templates' random weights are replaced by the saved ones
        nets = [exp.network(k) for k in range(len(exp.levels))]
    if len(exp.levels) > 1:
        return PyramidFlow.load(out / FLOW_NAME, nets=nets, map_location=map_location)
    return ConditionalMMDFlow.load(out / FLOW_NAME, net=nets[0], map_location=map_location)


def trained_for_chapter(folder: str | Path, experiment: ExperimentConfig, profile: str,
                        device: torch.device) -> tuple[ConditionalMMDFlow | PyramidFlow, dict[str, Any]] | None:
    """The flow that ``python -m cmmd.train EXPERIMENT --out FOLDER/EXPERIMENT`` trained for a chapter, with its run
    record, or None when ``FOLDER/EXPERIMENT`` holds no run (the chapter then trains the flow itself).

    Raises ``ValueError`` for a run of another profile or an unfinished one (saying how to finish it)."""
    out = Path(folder) / experiment.experiment
    if not (out / RUN_NAME).is_file():
        return None
    record = json.loads((out / RUN_NAME).read_text())
    if record.get("profile") != profile or record.get("experiment") != experiment.experiment:
        raise ValueError(f"{out} holds a run of {record.get('experiment')} in profile {record.get('profile')!r}, but "
                         f"this chapter runs {experiment.experiment} in profile {profile!r}: train it with "
                         f"python -m cmmd.train {experiment.experiment} --profile {profile} --out {out}")
    if not record.get("finished"):
        raise ValueError(f"{out} holds an unfinished run ({record.get('networks')} networks): finish it with "
                         f"python -m cmmd.train {experiment.experiment} --profile {profile} --out {out} --resume")
    return load_trained(out, map_location=device), record


def main(argv: list[str] | None = None) -> int:
    """The command line (module docstring); returns the exit status (2 for a usage error)."""
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        exp = check_request(args)
    except ValueError as error:
        print(f"cmmd.train: error: {error}", file=sys.stderr)
        return 2
    cluster = start_cluster(device)
    try:
        record = train(exp, args, cluster)
    except UsageError as error:  # the same on every rank (missing data)
        stop_cluster(cluster, wait=False)
        print(f"cmmd.train: error: {error}", file=sys.stderr)
        return 2
    except BaseException:
        stop_cluster(cluster, wait=False)
        raise
    stop_cluster(cluster)
    if cluster.is_main:
        where = f"{record['processes']} process{'es' if record['processes'] > 1 else ''} on {record['device']}"
        state = f"wrote {Path(args.out) / FLOW_NAME}" if record["finished"] else "stopped; --resume continues"
        print(f"{record['experiment']} ({record['profile']}): {record['networks']} networks in "
              f"{record['seconds']:.1f} s, {where}; {state}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
