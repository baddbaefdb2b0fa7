"""CIFAR-10 (class-conditional, inpainting) and CelebA (super-resolution): coarse-to-fine pyramids [method §4, §5].

Four resolution levels 1/8 → 1/4 → 1/2 → 1 of the image, full projections below the finest levels and patch
projections at the top; momentum grows by 0.01 per network up to 0.8 over the full-projection levels [code].
Every ``paper`` value says where it comes from ([method §N], or [code]: the authors' repository
FabianAltekrueger/Conditional_MMD_Flows).
"""

from __future__ import annotations

from cmmd.experiments.common import CPU_NET, PAPER_SMALL_IMAGE_NET, smoke
from cmmd.experiments.spec import Changes, Experiment, ExperimentConfig, Level
from cmmd.experiments.tasks import ClassConditional, Inpainting, SuperResolution
from cmmd.flowspec import Patches, Sliced


def _cifar_levels(totals: tuple[int, int, int, int]) -> tuple[Level, ...]:
    """[code] run_cifar_*.py: down_factors 8, 4, 2, 1; step_sizes .5, 1, 1, 1; step_exps 4, 10, 13, 13;
    full projections with P = max(500, d) below 32 px; at 32 px p = 7, scales 0..3 (windows 7..28),
    weights 1, P = 400 [method §5]."""
    top = Patches(patch_size=7, windows=(7, 14, 21, 28), weights=(1.0, 1.0, 1.0, 1.0), n_projections=400)
    return (
        Level(size=4, step_size=0.5, first_exponent=4, total_steps=totals[0], projection=Sliced(max(500, 3 * 4 * 4))),
        Level(size=8, step_size=1.0, first_exponent=10, total_steps=totals[1], projection=Sliced(max(500, 3 * 8 * 8))),
        Level(size=16, step_size=1.0, first_exponent=13, total_steps=totals[2],
              projection=Sliced(max(500, 3 * 16 * 16))),
        Level(size=32, step_size=1.0, first_exponent=13, total_steps=totals[3], projection=top),
    )


def small_pyramid(sizes: tuple[int, ...], top: Patches, *, steps: int, n_full: int) -> tuple[Level, ...]:
    """A reduced pyramid: the paper's sizes and τ, ``steps`` flow steps per level, T_1 = 2^4, full projections
    with P = ``n_full`` below the top level and the patches ``top`` there."""
    taus = (0.5,) + (1.0,) * (len(sizes) - 1)
    levels = [Level(size=s, step_size=t, first_exponent=4, total_steps=steps, projection=Sliced(n_full))
              for s, t in zip(sizes[:-1], taus[:-1])]
    levels.append(Level(size=sizes[-1], step_size=1.0, first_exponent=4, total_steps=steps, projection=top))
    return tuple(levels)


def cifar10_classcond() -> ExperimentConfig:
    return ExperimentConfig(
        experiment="cifar10-classcond", profile="paper",
        task=ClassConditional(n_classes=10, label_scale=10.0),  # [method §5]: label
        x_shape=(3, 32, 32),  # [method §5]
        y_shape=(10,),
        n_train=40_000,  # [method §5]
        levels=_cifar_levels((700_000, 700_000, 700_000, 1_000_000)),  # [code] num_steps; ≈156 networks
        n_networks=None,
        max_increment=1024, max_steps=30_000,  # [code]
        train_steps=4000,  # [code] run_cifar_classcond.py
        batch_size=100,  # [code]
        lr=5e-4,  # [method §3]
        net=PAPER_SMALL_IMAGE_NET,  # [code]
        sample_batch=100,  # [code]
        momentum_increment=0.01, momentum_max=0.8,  # [method §5]: momentum up to .8 at coarse levels [code]
        upsample_noise=0.07,  # [method §4]
    )


def cifar10_inpainting() -> ExperimentConfig:
    return cifar10_classcond().with_changes(
        experiment="cifar10-inpainting",
        task=Inpainting(observed_rows=16),  # [method §5]: the bottom 16 rows
        y_shape=(3 * 16 * 32,),
        n_train=30_000,  # [method §5]
        levels=_cifar_levels((600_000, 600_000, 600_000, 1_000_000)),  # [code] num_steps; ≈147 networks
        train_steps=5000,  # [code] run_cifar_inpainting.py: 5,000 steps (class-conditional: 4,000)
    )


def celeba_superres() -> ExperimentConfig:
    # [code] scales [0, 2] at 32 px and [0, 2, 6] at 64 px, weights step_sizes_scale[s] = .3, 1, 1
    patches_32 = Patches(patch_size=7, windows=(7, 21), weights=(0.3, 1.0), n_projections=500)
    patches_64 = Patches(patch_size=7, windows=(7, 21, 49), weights=(0.3, 1.0, 1.0), n_projections=500)
    return ExperimentConfig(
        experiment="celeba-superres", profile="paper",
        task=SuperResolution(factor=4, noise_std=0.01),  # [method §5]: bicubic ↓4, + N(0, 0.01²)
        x_shape=(3, 64, 64),  # [method §5]: 64×64 crop
        y_shape=(3, 16, 16),  # [method §5]: 16×16
        n_train=20_000,  # [method §5]
        levels=(  # [code] down_factors 8, 4, 2, 1; step_sizes .5, 1, 1, 1; step_exps 4, 10, 13, 13
            Level(size=8, step_size=0.5, first_exponent=4, total_steps=600_000, projection=Sliced(max(500, 3 * 8 * 8))),
            Level(size=16, step_size=1.0, first_exponent=10, total_steps=600_000,
                  projection=Sliced(max(500, 3 * 16 * 16))),
            Level(size=32, step_size=1.0, first_exponent=13, total_steps=600_000, projection=patches_32),
            Level(size=64, step_size=1.0, first_exponent=13, total_steps=1_000_000, projection=patches_64),
        ),  # [method §5]: local at 32/64 px, P = 500; ≈147 networks
        n_networks=None,
        max_increment=1024, max_steps=30_000,  # [code]
        train_steps=5000,  # [code] run_celeba_superres.py
        batch_size=10,  # [method §5]: B = 10
        lr=5e-4,  # [method §3]
        net=PAPER_SMALL_IMAGE_NET,  # [code]
        sample_batch=10,  # [code]
        momentum_increment=0.01, momentum_max=0.8,  # [code]
        upsample_noise=0.07,  # [method §4] [code]
    )


_CIFAR_CPU = dict(n_train=2000, max_steps=256, train_steps=200, batch_size=64, lr=1e-3, net=CPU_NET, sample_batch=500,
                  levels=small_pyramid((4, 8, 16, 32), Patches(patch_size=7, windows=(7, 14, 21, 28),
                                                               weights=(1.0,) * 4, n_projections=100),
                                       steps=600, n_full=200))
_CIFAR_WHY = ("Not run by the `cpu` book (CIFAR-10 must be downloaded); a small pyramid of 600 flow steps per level "
              "for a quick GPU or CPU try.")
_CIFAR_SMOKE = smoke(levels=small_pyramid((4, 8, 16, 32), Patches(patch_size=7, windows=(7, 28), weights=(1.0, 1.0),
                                                                   n_projections=8), steps=2, n_full=8),
                     level=dict(first_exponent=1, total_steps=2))

EXPERIMENTS = {
    "cifar10-classcond": Experiment("cifar10-classcond", cifar10_classcond, cpu=Changes(_CIFAR_WHY, _CIFAR_CPU),
                                    smoke=_CIFAR_SMOKE),
    "cifar10-inpainting": Experiment("cifar10-inpainting", cifar10_inpainting, cpu=Changes(_CIFAR_WHY, _CIFAR_CPU),
                                     smoke=_CIFAR_SMOKE),
    "celeba-superres": Experiment(
        "celeba-superres", celeba_superres,
        cpu=Changes("Not run by the `cpu` book (CelebA must be downloaded); a small pyramid of 400 flow steps per "
                    "level.", dict(
                        n_train=1000, max_steps=256, train_steps=150, batch_size=16, lr=1e-3, net=CPU_NET,
                        sample_batch=100,
                        levels=small_pyramid((8, 16, 32, 64), Patches(patch_size=7, windows=(7, 21, 49),
                                                                      weights=(0.3, 1.0, 1.0), n_projections=100),
                                             steps=400, n_full=200))),
        smoke=smoke(levels=small_pyramid((8, 16, 32, 64), Patches(patch_size=7, windows=(7, 49), weights=(0.3, 1.0),
                                                                  n_projections=8), steps=2, n_full=8),
                    level=dict(first_exponent=1, total_steps=2))),
}
