"""Computed tomography on LoDoPaB-CT: low-dose (all angles) and limited-angle (the middle 80%) [method §5].

The condition of the flow is the FBP image of the observed sinogram (:class:`cmmd.experiments.tasks.ComputedTomography`).
Every ``paper`` value says where it comes from ([method §N], or [code]: the authors' repository
FabianAltekrueger/Conditional_MMD_Flows); the reduced profiles are lists of changes with the reason.
"""

from __future__ import annotations

from cmmd.experiments.common import CPU_UNNORMALISED_NET, SMOKE_UNNORMALISED_NET, smoke
from cmmd.experiments.spec import Changes, Experiment, ExperimentConfig, Level, NetSpec
from cmmd.experiments.tasks import ComputedTomography
from cmmd.flowspec import Patches
from cmmd.operators.noise import WINDOW_ATTENUATION


def ct_patches(n_projections: int) -> Patches:
    """[code] run_CT.py: p = 15, scales s = 0..10 and 20 (windows 15·(s+1)); weights .1 for s < 6,
    .2 for s < 10, .5 for s < 20, 1 for s = 20; the FBP image cut at the same window."""
    scales = tuple(range(11)) + (20,)
    weights = tuple(0.1 if s < 6 else 0.2 if s < 10 else 0.5 if s < 20 else 1.0 for s in scales)
    return Patches(patch_size=15, windows=tuple(15 * (s + 1) for s in scales), weights=weights,
                   n_projections=n_projections, y_mode="window")


def _ct(name: str, angle_fraction: float) -> ExperimentConfig:
    return ExperimentConfig(
        experiment=name, profile="paper",
        task=ComputedTomography(
            n_angles=1000,  # [method §5]: 1,000 angles
            angle_fraction=angle_fraction,  # [method §5]: limited angle keeps 800 of 1,000
            n_detectors=513,  # LoDoPaB's detector (dival)
            low_dose=True,  # [code] both settings observe LoDoPaB's low-dose sinograms
            attenuation=1.0,  # LoDoPaB's images store μ / μ_max (Leuschner et al. 2021)
        ),
        x_shape=(1, 362, 362),  # [method §5]: LoDoPaB 362×362
        y_shape=(1, 362, 362),  # [method §5]: y = FBP image
        n_train=500,  # [method §5]: the first 500 training pairs
        levels=(Level(
            size=362,
            step_size=1.0,  # [method §5]: τ = 1
            first_exponent=4,  # [method §3]: T_1 = 2^4
            projection=ct_patches(400),  # [method §5]: p = 15, 12 scales, P = 400; windows/weights [code]
            momentum=0.0,  # [code] no momentum
        ),),
        n_networks=40,  # [method §5]: L = 40
        max_increment=1024,  # [method §3]
        max_steps=10_000,  # [method §3]: cap 10,000 for CT
        train_steps=4000,  # [code] run_CT.py
        batch_size=10,  # [method §3]: batch 10 for large images [code]
        lr=5e-4,  # [method §3]
        grad_clip=1.0,  # [method §5]: grad-clip 1
        net=NetSpec(base_width=32, channel_mult=(1, 1, 2, 2, 4), blocks=1, norm_groups=None),
        # [code] dival get_unet_model (scales=5, use_norm=False): widths 32, 32, 64, 64, 128
        sample_batch=10,  # [code]
    )


def ct_lowdose() -> ExperimentConfig:
    return _ct("ct-lowdose", 1.0)  # [method §5]: low-dose sinogram, all angles


def ct_limited_angle() -> ExperimentConfig:
    # [method §5]: 800 of 1,000 angles; [code] the authors take the observations of LoDoPaB's low-dose sinograms
    # on angles 100..899, so the photon noise of the low-dose setting stays.
    return _ct("ct-limited-angle", 0.8)


def _cpu_changes(fraction: float) -> Changes:
    why = ("Reduced resolution 64×64 (procedural phantoms offline [method §7]), 100 angles (limited angle: the "
           "middle 80) and 64 detector bins. Patch projections p = 4 at windows 4..64; one 4×4 window per step "
           "covers 1/256 of the image, too little to remove the pixel noise of the initial particles in the ~1,300 "
           "flow steps a CPU affords, so the 4×4 and 8×8 scales are drawn 12 and 4 times per step (each its own "
           "random window, weight 0.1: larger weights diverged). Step size τ = 0.5: with the paper's τ = 1 the "
           "sliced noise kept the joint MMD² near 0.35 after every flow and the later networks got worse. The "
           "phantoms are windowed from −1000 HU (0) to 1000 HU (1), so the value 1 attenuates 2 μ_water ≈ 0.49 μ_max "
           "(water at LoDoPaB's 0.246 μ_max): with μ_max for the value 1, water would attenuate twice as much as in "
           "LoDoPaB. τ and the windows were chosen on the validation images of chapter 7, before the attenuation "
           "was corrected.")
    patches = Patches(patch_size=4, windows=(4,) * 12 + (8,) * 4 + (16, 32, 64), weights=(0.1,) * 16 + (0.2, 0.5, 1.0),
                      n_projections=100, y_mode="window")
    task = ComputedTomography(n_angles=100, angle_fraction=fraction, n_detectors=64, low_dose=True,
                              attenuation=WINDOW_ATTENUATION)
    return Changes(why, dict(
        task=task, x_shape=(1, 64, 64), y_shape=(1, 64, 64), n_train=300, n_networks=10, max_steps=256,
        train_steps=200, batch_size=8, lr=1e-3, net=CPU_UNNORMALISED_NET, sample_batch=50,
        level=dict(size=64, step_size=0.5, projection=patches)))


def _smoke_changes(fraction: float) -> Changes:
    patches = Patches(patch_size=4, windows=(4, 32), weights=(0.1, 1.0), n_projections=8, y_mode="window")
    task = ComputedTomography(n_angles=24, angle_fraction=fraction, n_detectors=32, low_dose=True,
                              attenuation=WINDOW_ATTENUATION)
    return smoke(task=task,
                 x_shape=(1, 32, 32), y_shape=(1, 32, 32), n_networks=2, net=SMOKE_UNNORMALISED_NET,
                 level=dict(size=32, first_exponent=1, projection=patches))


EXPERIMENTS = {
    "ct-lowdose": Experiment("ct-lowdose", ct_lowdose, cpu=_cpu_changes(1.0), smoke=_smoke_changes(1.0)),
    "ct-limited-angle": Experiment("ct-limited-angle", ct_limited_angle, cpu=_cpu_changes(0.8),
                                   smoke=_smoke_changes(0.8)),
}
