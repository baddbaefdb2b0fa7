"""Super-resolution of SiC microstructures (materials): 100×100 tiles, 16×16 Gaussian blur σ = 2 with stride 4
(periodic) → 25×25, noise σ = 0.01, one 600×600 test image sampled fully convolutionally [method §5].

Every ``paper`` value says where it comes from ([method §N], or [code]: the authors' repository
FabianAltekrueger/Conditional_MMD_Flows); the reduced profiles are lists of changes with the reason.
"""

from __future__ import annotations

from dataclasses import replace

from cmmd.experiments.common import CPU_UNNORMALISED_NET, SMOKE_UNNORMALISED_NET, smoke
from cmmd.experiments.spec import Changes, Experiment, ExperimentConfig, Level, NetSpec
from cmmd.experiments.tasks import SuperResolution
from cmmd.flowspec import Exact, Sliced


PAPER_TASK = SuperResolution(
    factor=4,  # [method §5]: stride 4
    noise_std=0.01,  # [method §5]: + N(0, 0.01²)
    kernel="blur", kernel_size=16, blur_sigma=2.0,  # [method §5]: 16×16 Gaussian blur σ = 2
    tile_observations="periodic",  # [code]: A applied to each tile on its own periodic grid
    test_size=600,  # [method §5]: one 600×600 test image, flow applied fully convolutionally
    test_padding=40,  # [code] reflect padding 40 px at test time, cropped after sampling
)


def materials_superres() -> ExperimentConfig:
    return ExperimentConfig(
        experiment="materials-superres", profile="paper",
        task=PAPER_TASK,
        x_shape=(1, 100, 100),  # [method §5]: 100×100 tiles
        y_shape=(1, 25, 25),  # [method §5]: → 25×25
        n_train=1000,  # [method §5]: the first 1,000 tiles
        levels=(Level(
            size=100,
            step_size=1.0,  # [method §5]: τ = 1
            first_exponent=3,  # [method §3]: T_1 = 2^3 for materials
            projection=Sliced(5000),  # [method §5]: full, P = 5,000 (= d/2 [code])
            momentum=0.7,  # [method §5]: momentum 0.7
        ),),
        n_networks=30,  # [method §5]: L = 30
        max_increment=1024,  # [method §3]
        max_steps=10_000,  # [method §3]: cap 10,000 for materials
        train_steps=4000,  # [method §5]
        batch_size=10,  # [method §5]
        lr=5e-4,  # [method §3]
        net=NetSpec(base_width=32, channel_mult=(1, 1, 2, 2, 4, 4), blocks=1, norm_groups=None),
        # [code] dival get_unet_model(scales=6, use_norm=False): widths 32, 32, 64, 64, 128, 128
        sample_batch=10,  # [code]
    )


_CPU_WHY = (
    "32×32 tiles (→ 8×8 observations; the flow and the UNet are convolutional, the 600×600 images are the same), observed "
    "as parts of their slice (\"cropped\"): with periodic tiles a quarter or more of the observed pixels mix in the "
    "opposite tile edge (errors of 3σ there), which a whole 600×600 slice never shows. The exact gradient instead "
    "of P projections: no projection noise, so the paper's momentum 0.7 converges (with P = 500 it diverged). "
    "N = 1,500 tiles, 10 networks of up to 256 flow steps, 150 Adam steps each (450 fit the training particles "
    "better and the validation image far worse; 75 gave almost identical samples), a small UNet; chapter 6 "
    "tabulates the trials, all scored on the validation image test/hr_img.png, and reports on two held-out "
    "training slices on which no trial was scored."
)

EXPERIMENTS = {
    "materials-superres": Experiment(
        "materials-superres", materials_superres,
        cpu=Changes(_CPU_WHY, dict(
            x_shape=(1, 32, 32), y_shape=(1, 8, 8), task=replace(PAPER_TASK, tile_observations="cropped"),
            n_train=1500, n_networks=10, max_steps=256, train_steps=150, batch_size=8, lr=2e-3,
            net=CPU_UNNORMALISED_NET, sample_batch=50, level=dict(size=32, projection=Exact(), momentum=0.7))),
        smoke=smoke(n_networks=2, net=SMOKE_UNNORMALISED_NET)),
}
