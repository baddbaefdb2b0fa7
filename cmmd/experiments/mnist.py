"""MNIST and FashionMNIST: class-conditional generation and inpainting of the bottom rows [method §5].

Every ``paper`` value says where it comes from: the paper's table [method §5], its schedule [method §3], or the
authors' code [code] (FabianAltekrueger/Conditional_MMD_Flows). The reduced profiles are lists of changes.
"""

from __future__ import annotations

from dataclasses import replace

from cmmd.experiments.common import CPU_NET, PAPER_SMALL_IMAGE_NET, smoke
from cmmd.experiments.spec import Changes, Experiment, ExperimentConfig, Level
from cmmd.experiments.tasks import ClassConditional, Inpainting
from cmmd.flowspec import Patches, Projection, Sliced, with_n_projections


def mnist_classcond() -> ExperimentConfig:
    return ExperimentConfig(
        experiment="mnist-classcond", profile="paper",
        task=ClassConditional(n_classes=10, label_scale=10.0),  # [method §5]: label → 10·one-hot
        x_shape=(1, 28, 28),  # [method §5]
        y_shape=(10,),
        n_train=20_000,  # [method §5]: the first 20,000 training images
        levels=(Level(
            size=28,
            step_size=1.0,  # [method §5]: τ = 1
            first_exponent=4,  # [method §3]: T_1 = 2^4
            projection=Patches(
                patch_size=5,  # [method §5]
                windows=(5, 10, 15, 20, 25),  # [method §5]
                weights=(0.1, 0.1, 0.1, 1.0, 1.0),  # [method §5]
                n_projections=500,  # [method §5]
                slicing="joint",  # [code] s_factor = sliced_factor(d + obs_dim)
            ),
            momentum=0.0,  # [method §5]: m = 0
        ),),
        n_networks=50,  # [method §5]: L = 50
        max_increment=1024,  # [method §3]
        max_steps=30_000,  # [method §3]: cap 30,000
        train_steps=5000,  # [method §5]
        batch_size=100,  # [method §5]
        lr=5e-4,  # [method §3]
        grad_clip=None,  # [code] no clipping
        net=PAPER_SMALL_IMAGE_NET,  # [code]
        sample_batch=100,  # [code] networks applied in batches of batch_size
    )


def fashionmnist_classcond() -> ExperimentConfig:
    return mnist_classcond().with_changes(
        experiment="fashionmnist-classcond",
        n_train=20_000,  # [method §5]; L = 50, τ = 1, T_1 = 2^4, m = 0, 5,000 Adam steps, B = 100 as MNIST [code]
        level=dict(projection=Patches(
            patch_size=9,  # [method §5]
            windows=(9, 27),  # [method §5] (scales s = 0, 2 [code])
            weights=(0.8, 1.0),  # [method §5]
            n_projections=500,  # [method §5]
            slicing="joint",  # [code]
        )),
    )


def mnist_inpainting() -> ExperimentConfig:
    return mnist_classcond().with_changes(
        experiment="mnist-inpainting",
        task=Inpainting(observed_rows=10),  # [method §5]: the bottom 10 rows, no noise
        y_shape=(10 * 28,),
        n_train=20_000,  # [method §5]
        n_networks=90,  # [method §5]: L = 90; τ = 1 [method §5]
        level=dict(projection=Patches(
            patch_size=5,  # [method §5]
            windows=(5, 10, 15, 20),  # [method §5]: windows 5..20
            weights=(0.25, 0.5, 0.85, 0.85),  # [method §5]
            n_projections=500,  # [method §5]
            slicing="joint",  # [code]
        )),
    )


def fashionmnist_inpainting() -> ExperimentConfig:
    return mnist_inpainting().with_changes(
        experiment="fashionmnist-inpainting",  # [method §5]: L = 90, N = 20,000, 10 rows, τ = 1
        level=dict(projection=Patches(
            patch_size=7,  # [method §5]
            windows=(7, 14, 21),  # [method §5]
            weights=(0.4, 0.6, 0.85),  # [code] run_fashionmnist_inpainting.py
            n_projections=500,  # [method §5]
            slicing="joint",  # [code]
        )),
    )


def cpu_changes(why: str, projection: Projection, momentum: float, *, n_networks: int = 8, flow_steps: int = 128,
                train_steps: int = 160) -> Changes:
    """A reduced MNIST-family flow: the first 4,000 training images, ``n_networks`` networks of a constant
    T = ``flow_steps`` flow steps (a power of 2; max_increment = 0), ``train_steps`` Adam steps each at batch 64 and
    lr 2e-3, a small UNet, the given projections and momentum."""
    if flow_steps < 2 or flow_steps & (flow_steps - 1):
        raise ValueError(f"flow_steps must be a power of 2 (T = 2^first_exponent), got {flow_steps}")
    return Changes(why, dict(
        n_train=4000, n_networks=n_networks, max_increment=0, max_steps=flow_steps, train_steps=train_steps,
        batch_size=64, lr=2e-3, net=CPU_NET, sample_batch=500,
        level=dict(first_exponent=flow_steps.bit_length() - 1, projection=projection, momentum=momentum)))


#: The paper's settings of each experiment.
PAPER = {"mnist-classcond": mnist_classcond, "fashionmnist-classcond": fashionmnist_classcond,
         "mnist-inpainting": mnist_inpainting, "fashionmnist-inpainting": fashionmnist_inpainting}
#: Projections and momentum of the first version of the book's `cpu` profiles (8 networks x 128 flow steps x 160
#: Adam steps), chosen then on test images; the baseline candidate ``cpu-v1`` of ``scripts/validation_trials.py``.
CPU_V1 = {
    "mnist-classcond": (Sliced(100), 0.7),
    "fashionmnist-classcond": (Patches(patch_size=9, windows=(9, 27), weights=(0.8, 1.0), n_projections=100), 0.7),
    "mnist-inpainting": (Sliced(100), 0.0),
    "fashionmnist-inpainting": (Sliced(100), 0.7),
}


def paper_patches(experiment: str, n_projections: int = 100) -> Projection:
    """The paper's patch projections of an MNIST-family experiment [method §5] with P = ``n_projections``."""
    return with_n_projections(PAPER[experiment]().levels[0].projection, n_projections)


def cpu_candidates(experiment: str) -> dict[str, tuple[str, Changes]]:
    """The candidate reduced settings of an experiment that ``scripts/validation_trials.py`` scores on validation
    images: name → (what it is, its changes to the paper's settings)."""
    patches = paper_patches(experiment, 100)
    return {
        "cpu-v1": ("the `cpu` profile of book version 1 (chosen then on test images)",
                   cpu_changes("cpu-v1", *CPU_V1[experiment])),
        "patches-m0": ("the paper's patch projections at P = 100, momentum 0; otherwise as cpu-v1 (8 networks x 128 "
                       "steps x 160 Adam steps)", cpu_changes("patches-m0", patches, 0.0)),
        "patches-m0-long": ("the paper's patch projections at P = 100, momentum 0, 10 networks x 256 steps x 300 "
                            "Adam steps",
                            cpu_changes("patches-m0-long", patches, 0.0, n_networks=10, flow_steps=256,
                                        train_steps=300)),
    }


#: The candidate that the validation trials chose for each experiment's `cpu` profile, and why.
CPU_CHOICE = {
    "mnist-classcond": (
        "patches-m0-long", "FID in the judge's features 343 against 1,628 for cpu-v1 and 1,811 for patches-m0 "
                           "(background RMS 0.048, judge accuracy 87.3 %, spread 0.77 of real); its joint MMD² fell "
                           "from 0.044 to 0.004 over the networks"),
    "fashionmnist-classcond": (
        "patches-m0-long", "FID in the judge's features 176.8 against 445.6 for patches-m0 and 481.9 for cpu-v1 (the "
                           "same patches with momentum 0.7); background RMS 0.035, spread 0.81 of real"),
    "mnist-inpainting": (
        "patches-m0-long", "posterior-mean PSNR 14.37 dB, MSE ratio 1.72, against 13.85 dB and 1.72 for patches-m0 "
                           "and 13.81 dB and 1.40 for cpu-v1 (not eligible: collapsed)"),
    "fashionmnist-inpainting": (
        "patches-m0-long", "posterior-mean PSNR 16.03 dB, MSE ratio 1.87, against 15.32 dB and 1.83 for patches-m0; "
                           "cpu-v1 scored 15.74 dB but with MSE ratio 1.08 (collapsed, not eligible)"),
}


#: The sample/mean MSE ratio under which an inpainting candidate counts as collapsed (exact sampler, S = 16: 1.88).
MIN_MSE_RATIO = 1.5


def choose(record: dict) -> str:
    """The candidate that the rule fixed before the trials picks (fixed before the trials ran; :func:`_chosen` states it in the profile's reason):

    * class-conditional records (with ``fid``): the lowest Fréchet distance in the judge's features;
    * inpainting records (with ``psnr_mean``): the highest posterior-mean PSNR among candidates whose MSE ratio is
      at least :data:`MIN_MSE_RATIO`; when none is, the one with the highest ratio (the least collapsed).
    """
    trials = record["trials"]
    if not trials:
        raise ValueError(f"{record.get('experiment')}: the record holds no trial to choose from")
    if all("fid" in t for t in trials):
        return min(trials, key=lambda t: t["fid"])["candidate"]
    if all("psnr_mean" in t and "mse_ratio" in t for t in trials):
        eligible = [t for t in trials if t["mse_ratio"] >= MIN_MSE_RATIO]
        if eligible:
            return max(eligible, key=lambda t: t["psnr_mean"])["candidate"]
        return max(trials, key=lambda t: t["mse_ratio"])["candidate"]
    raise ValueError(f"{record.get('experiment')}: every trial needs 'fid', or 'psnr_mean' and 'mse_ratio'")


def _chosen(experiment: str) -> Changes:
    """The `cpu` changes of an experiment: its chosen candidate, with the reason."""
    name, reason = CPU_CHOICE[experiment]
    what, changes = cpu_candidates(experiment)[name]
    rule = ("the lowest FID in the features of a judge trained on them" if "classcond" in experiment else
            f"the highest posterior-mean PSNR among candidates with sample/mean MSE ratio ≥ {MIN_MSE_RATIO}")
    why = (f"The first 4,000 training images (offline) and the candidate `{name}` ({what}), chosen on validation "
           f"images (training images 3,601–4,000, held out from the trial fits; the trials are on the chapter's "
           f"page) by {rule}: {reason}.")
    return replace(changes, why=why)


EXPERIMENTS = {
    name: Experiment(name, PAPER[name], cpu=_chosen(name), smoke=smoke(n_networks=2)) for name in PAPER
}
