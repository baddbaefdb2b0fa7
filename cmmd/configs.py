r"""One frozen dataclass per paper experiment, each in three profiles (DESIGN.md: Profiles; METHOD.md §5).

``get_config(experiment, profile)`` returns the settings of one experiment:

- ``paper``: exactly the authors' values (METHOD.md §5; where the table is silent, their code [code],
  ``FabianAltekrueger/Conditional_MMD_Flows``). Each field says where it comes from.
- ``cpu``: reduced settings for the committed book on 2 CPU cores (minutes per chapter), sized from the
  costs measured in NOTES.md; a chapter says that its results are reduced.
- ``smoke``: tiny settings that only prove the code path runs (seconds).

Every config describes one or more resolution **levels**: a single one for most experiments, four for the
coarse-to-fine pyramids of CIFAR-10 and CelebA (1/8 → 1/4 → 1/2 → 1, METHOD.md §4). From a config:

- :meth:`ExperimentConfig.flow_config` gives the :class:`cmmd.model.FlowConfig` of a level,
- :meth:`ExperimentConfig.gradient` the flow gradient (patch projections, :mod:`cmmd.projections`, or
  full sliced projections),
- :meth:`ExperimentConfig.network` the :class:`cmmd.nets.UNet` with its condition encoder,
- :meth:`ExperimentConfig.flow_steps` the authors' schedule T_1..T_L,
- :func:`estimate_gpu_memory_gb` the GPU memory it needs, from the tensor sizes.

The flow schedule [code]: T_1 = 2^e and T_{l+1} = min(T_l + min(2^{e+l−1}, 1024), cap), i.e. the
increment doubles from T_1 until it reaches 1,024: the rule of :class:`cmmd.model.FlowConfig` with
``first_steps`` = 2^e, so :meth:`ExperimentConfig.flow_config` reproduces :meth:`ExperimentConfig.flow_steps`
(a test checks every experiment). :meth:`ExperimentConfig.build_flow` builds the untrained flow of a config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Sequence

import torch
from torch import nn

from cmmd._checks import check_nonnegative_int, check_number, check_positive_int
from cmmd.data.materials import materials_tiles
from cmmd.flow import GradientFn
from cmmd.model import ConditionalMMDFlow, FlowConfig
from cmmd.nets import ClassChannels, ImageCondition, ObservedImage, ResizedImage, UNet, count_parameters
from cmmd.operators import (
    BicubicDownsample,
    BlurDownsample,
    ClassCondition,
    Inpainting,
    ParallelBeamRadon,
    limited_angle,
    measured_angle_numbers,
)
from cmmd.operators.noise import LODOPAB_PHOTONS
from cmmd.projections import full_gradient, patch_gradient
from cmmd.pyramid import PyramidFlow
from cmmd.runtime import PROFILES, check_profile
from cmmd.sliced import DEFAULT_BLOCK


# ---------------------------------------------------------------------- building blocks
@dataclass(frozen=True, kw_only=True)
class PatchSpec:
    """Locally connected multi-scale projections of one level (METHOD.md §4; :func:`~cmmd.projections.patch_gradient`).

    Attributes:
        patch_size: p, side of the Gaussian patterns.
        windows: window sides w = (s+1)·p of the scales s used [code].
        weights: λ per scale [code: ``step_sizes``].
        n_projections: P per scale.
        y_mode: ``"vector"`` (whole condition) or ``"window"`` (CT: the same window of the FBP image).
        slicing: ``"joint"`` (the authors' constant c_{d+n}) or ``"local"``.
    """

    patch_size: int
    windows: tuple[int, ...]
    weights: tuple[float, ...]
    n_projections: int
    y_mode: str = "vector"
    slicing: str = "joint"


@dataclass(frozen=True, kw_only=True)
class NetSpec:
    """Size of the :class:`cmmd.nets.UNet`: width of the first level, multipliers per level, blocks per level,
    GroupNorm groups (``None``: no normalisation)."""

    base_width: int
    channel_mult: tuple[int, ...]
    blocks: int
    norm_groups: int | None = 8


@dataclass(frozen=True, kw_only=True)
class Level:
    """One resolution of the flow (the only one, or one pyramid level).

    Attributes:
        size: image side at this level.
        step_size: τ of the Euler step.
        first_exponent: e with T_1 = 2^e flow steps for the first network of the level.
        total_steps: pyramid levels train networks until this many flow steps were simulated at the level
            [code: ``num_steps``]; ``None``: the config's ``n_networks``.
        patches: locally connected projections, or ``None`` for full projections.
        n_projections: P of the full projections (``None``: the exact gradient) when ``patches`` is None.
        momentum: m of the first network of the level (see ``momentum_increment``).
    """

    size: int
    step_size: float
    first_exponent: int
    total_steps: int | None = None
    patches: PatchSpec | None = None
    n_projections: int | None = None
    momentum: float = 0.0


# ---------------------------------------------------------------------- the experiment config
@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Settings shared by every experiment; subclasses add the forward model's parameters.

    Attributes:
        experiment: registry name, e.g. ``"mnist-classcond"``.
        profile: ``"smoke"``, ``"cpu"`` or ``"paper"``.
        dataset: data set name for :mod:`cmmd.data`.
        x_shape: (C, H, W) of one ground truth at full resolution.
        y_shape: shape of one observation.
        n_train: N, training pairs = particles (the first N of the training split).
        levels: resolution levels, coarse to fine.
        n_networks: L for single-level experiments; ``None`` for pyramids (set by ``total_steps``).
        max_increment, max_steps: growth bound and cap of T_l.
        train_steps, batch_size, lr, grad_clip: Adam training of each network.
        net: UNet size.
        sample_batch: rows pushed through a network at once when applying it.
        momentum_increment, momentum_max: pyramids [code]: m grows by the increment after each network
            of a full-projection level, up to the maximum; patch levels use m = 0.
        upsample_noise: pyramids: σ of the noise added when particles move one level up.
    """

    experiment: str
    profile: str
    dataset: str
    x_shape: tuple[int, int, int]
    y_shape: tuple[int, ...]
    n_train: int
    levels: tuple[Level, ...]
    n_networks: int | None
    max_increment: int = 1024
    max_steps: int
    train_steps: int
    batch_size: int
    lr: float = 5e-4
    grad_clip: float | None = None
    net: NetSpec
    sample_batch: int
    momentum_increment: float = 0.0
    momentum_max: float = 0.0
    upsample_noise: float = 0.0

    NAME: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if not self.levels:
            raise ValueError("a config needs at least one level")
        if self.levels[-1].size != self.x_shape[1]:
            raise ValueError(
                f"the last level must be the full resolution {self.x_shape[1]}, got {self.levels[-1].size}"
            )
        if self.n_networks is None and any(level.total_steps is None for level in self.levels):
            raise ValueError("without n_networks every level needs total_steps")
        self._check_fields()

    def _check_fields(self) -> None:
        """Validate every field at construction (also after :meth:`with_changes`); messages name the field."""
        name = type(self).__name__
        shapes = (("x_shape", self.x_shape, 3), ("y_shape", self.y_shape, None))
        for field_name, shape, length in shapes:
            if not isinstance(shape, tuple) or not shape or (length and len(shape) != length) or not all(
                    isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
                raise ValueError(f"{name}.{field_name} must be a tuple of {length or 'one or more'} positive ints, "
                                 f"got {shape!r}")
        for field_name in ("n_train", "max_steps", "train_steps", "batch_size", "sample_batch"):
            check_positive_int(f"{name}.{field_name}", getattr(self, field_name))
        if self.n_networks is not None:
            check_positive_int(f"{name}.n_networks (or None for pyramids)", self.n_networks)
        check_nonnegative_int(f"{name}.max_increment", self.max_increment)
        check_number(f"{name}.lr", self.lr, low=0, low_open=True)
        if self.grad_clip is not None:
            check_number(f"{name}.grad_clip (or None)", self.grad_clip, low=0, low_open=True)
        check_number(f"{name}.momentum_increment", self.momentum_increment, low=0)
        check_number(f"{name}.momentum_max", self.momentum_max, low=0, high=1, high_open=True)
        check_number(f"{name}.upsample_noise", self.upsample_noise, low=0)
        for k, level in enumerate(self.levels):
            where = f"{name}.levels[{k}]"
            check_positive_int(f"{where}.size", level.size)
            check_number(f"{where}.step_size", level.step_size, low=0, low_open=True)
            check_nonnegative_int(f"{where}.first_exponent", level.first_exponent)
            if level.total_steps is not None:
                check_positive_int(f"{where}.total_steps (or None)", level.total_steps)
            if k and (level.size <= self.levels[k - 1].size or level.size % self.levels[k - 1].size):
                raise ValueError(f"{where}.size = {level.size} must be a larger multiple of the size "
                                 f"{self.levels[k - 1].size} of the level below")
            try:  # what the level builds checks the rest: momentum, projections, patch windows
                self.flow_config(k)
                self.gradient(k)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None

    # ------------------------------------------------------------------ profiles
    @classmethod
    def for_profile(cls, profile: str) -> "ExperimentConfig":
        """The config of ``profile`` (``smoke``, ``cpu`` or ``paper``)."""
        check_profile(profile)
        return getattr(cls, profile)()

    @classmethod
    def paper(cls) -> "ExperimentConfig":
        raise NotImplementedError

    @classmethod
    def cpu(cls) -> "ExperimentConfig":
        raise NotImplementedError

    @classmethod
    def smoke(cls) -> "ExperimentConfig":
        raise NotImplementedError

    def with_changes(self, **changes) -> "ExperimentConfig":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ levels and schedule
    def level_index(self, level: int) -> int:
        if not -len(self.levels) <= level < len(self.levels):
            raise ValueError(f"level must be in [-{len(self.levels)}, {len(self.levels)}), got {level}")
        return level % len(self.levels)

    def level_shape(self, level: int = -1) -> tuple[int, int, int]:
        """(C, s, s) of the particles at a level."""
        size = self.levels[self.level_index(level)].size
        return (self.x_shape[0], size, size)

    def flow_steps(self, level: int = -1) -> list[int]:
        """T_1..T_L of a level [code]: T_1 = 2^e, T_{l+1} = min(T_l + min(2^{e+l−1}, max_increment), max_steps);
        L = ``n_networks``, or (pyramids) as many as needed to simulate ``total_steps`` flow steps."""
        lv = self.levels[self.level_index(level)]
        steps, exponent, done = [], lv.first_exponent, 0
        current = min(2**exponent, self.max_steps)
        while True:
            steps.append(current)
            done += current
            if (lv.total_steps is None and len(steps) >= self.n_networks) or (
                lv.total_steps is not None and done >= lv.total_steps
            ):
                return steps
            current = min(current + min(2**exponent, self.max_increment), self.max_steps)
            exponent += 1

    def networks_per_level(self) -> tuple[int, ...]:
        return tuple(len(self.flow_steps(i)) for i in range(len(self.levels)))

    @property
    def total_networks(self) -> int:
        return sum(self.networks_per_level())

    def momenta(self, level: int = -1) -> list[float]:
        """Momentum m used by each network of a level: constant, or growing by ``momentum_increment`` per network
        over the full-projection levels (carried across them) and 0 on patch levels [code]."""
        index = self.level_index(level)
        m = 0.0
        for i, lv in enumerate(self.levels):
            values = []
            m = lv.momentum if i == 0 or self.momentum_increment == 0 else m
            for _ in self.flow_steps(i):
                values.append(0.0 if lv.patches is not None and self.momentum_increment else m)
                m = min(self.momentum_max, m + self.momentum_increment) if self.momentum_increment else m
            if i == index:
                return values
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ what the config builds
    def flow_config(self, level: int = -1) -> FlowConfig:
        """The :class:`cmmd.model.FlowConfig` of a level (its ``n_projections`` is P of the level's projections;
        pass :meth:`gradient` as ``gradient=`` to :class:`cmmd.model.ConditionalMMDFlow`)."""
        lv = self.levels[self.level_index(level)]
        steps, momenta = self.flow_steps(level), self.momenta(level)
        growing = len(set(momenta)) > 1
        return FlowConfig(
            n_networks=len(steps), first_steps=steps[0], max_increment=self.max_increment, max_steps=self.max_steps,
            n_projections=lv.patches.n_projections if lv.patches is not None else lv.n_projections,
            step_size=lv.step_size, momentum=momenta[0], momentum_increment=self.momentum_increment if growing else 0.0,
            momentum_max=self.momentum_max if growing else 1.0, train_steps=self.train_steps,
            batch_size=self.batch_size, lr=self.lr, lr_schedule="constant", grad_clip=self.grad_clip,
            sample_batch=self.sample_batch,
        )

    def gradient(self, level: int = -1, *, max_block: int = DEFAULT_BLOCK) -> GradientFn:
        """The flow gradient of a level for joint vectors [x_flat (C·s·s), y_flat]."""
        lv = self.levels[self.level_index(level)]
        if lv.patches is None:
            return full_gradient(lv.n_projections)
        spec = lv.patches
        return patch_gradient(
            self.level_shape(level), self.y_shape, patch_size=spec.patch_size, windows=spec.windows,
            weights=spec.weights, n_projections=spec.n_projections, y_mode=spec.y_mode, slicing=spec.slicing,
            max_block=max_block,
        )

    def condition_encoder(self, level: int = -1) -> nn.Module:
        """Renders y (B, *y_shape) as (B, cond_channels, s, s) at a level (METHOD.md §3)."""
        raise NotImplementedError

    @property
    def cond_channels(self) -> int:
        raise NotImplementedError

    def unet_kwargs(self) -> dict:
        """Size options of :class:`cmmd.nets.UNet` (besides the channels and the condition encoder)."""
        return dict(base_width=self.net.base_width, channel_mult=self.net.channel_mult, blocks=self.net.blocks,
                    norm_groups=self.net.norm_groups)

    def network(self, level: int = -1) -> UNet:
        """A fresh UNet Φ for a level (initialised from the global RNG: wrap it in ``torch.random.fork_rng``)."""
        return UNet(self.x_shape[0], self.cond_channels, condition_encoder=self.condition_encoder(level),
                    **self.unet_kwargs())

    def build_flow(
        self, *, init_seed: int, device: str | torch.device | None = None, **flow_changes
    ) -> ConditionalMMDFlow | PyramidFlow:
        """The untrained learned flow of this experiment, ready for ``fit(x, y)``.

        One :class:`~cmmd.model.ConditionalMMDFlow` per level (its :meth:`flow_config`, :meth:`gradient` and
        :meth:`network`), wrapped in a :class:`~cmmd.pyramid.PyramidFlow` when there are several levels.

        Args:
            init_seed: the UNets are initialised after ``torch.manual_seed(init_seed)``, inside
                ``torch.random.fork_rng``, so the global random state does not move.
            device: where the networks live (the training data must be there too).
            flow_changes: fields of :class:`~cmmd.model.FlowConfig` to replace in every level,
                e.g. ``lr_schedule="cosine"``.
        """
        known = {f.name for f in fields(FlowConfig)}
        if set(flow_changes) - known:
            raise ValueError(f"build_flow: {sorted(set(flow_changes) - known)} are not FlowConfig fields; "
                             f"valid ones: {', '.join(sorted(known))}")
        configs = [replace(self.flow_config(k), **flow_changes) for k in range(len(self.levels))]  # validated
        flows = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            for k in range(len(self.levels)):
                flows.append(ConditionalMMDFlow(
                    self.level_shape(k), self.y_shape, net=self.network(k).to(device),
                    config=configs[k], gradient=self.gradient(k)))
        return flows[0] if len(flows) == 1 else PyramidFlow(flows, upsample_noise=self.upsample_noise)

    # ------------------------------------------------------------------ what a chapter shows
    def summary(self) -> dict[str, object]:
        """The settings as printable rows, label → value: the forward model (:meth:`forward_rows`), the flow of
        the finest level, the networks, and the GPU memory estimate of training (:func:`estimate_gpu_memory_gb`)."""
        level = self.levels[-1]
        steps = self.flow_steps()
        with torch.random.fork_rng(devices=[]):  # building the UNet to count it must not move the global RNG
            parameters = count_parameters(self.network())
        return {
            **self.forward_rows(),
            "training pairs N": self.n_train,
            "projections": _projections_text(level),
            "step size τ": level.step_size,
            "momentum": level.momentum,
            "networks L": self.total_networks,
            "flow steps T_l": f"{steps[0]} … {steps[-1]}",
            "flow steps in total": sum(sum(self.flow_steps(i)) for i in range(len(self.levels))),
            "Adam steps per network": self.train_steps,
            "batch": self.batch_size,
            "learning rate": self.lr,
            "gradient clipping": self.grad_clip,
            "UNet widths": ", ".join(str(self.net.base_width * m) for m in self.net.channel_mult),
            "UNet parameters": parameters,
            "GPU memory estimate (GiB)": round(estimate_gpu_memory_gb(self), 2),
        }

    def forward_rows(self) -> dict[str, object]:
        """Rows of :meth:`summary` that describe the forward model (each family adds its own)."""
        return {}


def _projections_text(level: Level) -> str:
    """'full, P=…', or the patch projections with each window size and how often it is drawn per step."""
    if level.patches is None:
        return "full, exact gradient" if level.n_projections is None else f"full, P={level.n_projections}"
    spec = level.patches
    sizes = sorted(set(spec.windows))
    if len(sizes) > 6:
        windows = f"{sizes[0]} … {sizes[-1]} ({len(sizes)} sizes)"
    else:
        windows = ", ".join(f"{w}×{spec.windows.count(w)}" if spec.windows.count(w) > 1 else str(w) for w in sizes)
    return f"patches p={spec.patch_size}, windows {windows}, P={spec.n_projections} each"


def _side(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape[1:]))


# ---------------------------------------------------------------------- experiment families
@dataclass(frozen=True, kw_only=True)
class ClassConditionalConfig(ExperimentConfig):
    """Class-conditional generation: y = ``label_scale`` · one-hot(label) (METHOD.md §5)."""

    n_classes: int = 10
    label_scale: float = 10.0

    def operator(self) -> ClassCondition:
        return ClassCondition(self.n_classes, self.label_scale)

    def forward_rows(self) -> dict[str, object]:
        return {"condition": f"{self.label_scale:g} · one-hot of {self.n_classes} classes"}

    def condition_encoder(self, level: int = -1) -> nn.Module:
        _, size, _ = self.level_shape(level)
        return ClassChannels(size, size)

    @property
    def cond_channels(self) -> int:
        return self.n_classes


@dataclass(frozen=True, kw_only=True)
class InpaintingConfig(ExperimentConfig):
    """Inpainting: the bottom ``observed_rows`` rows are observed without noise (METHOD.md §5)."""

    observed_rows: int

    def operator(self) -> Inpainting:
        c, h, w = self.x_shape
        return Inpainting.bottom_rows(h, w, self.observed_rows, channels=c)

    def forward_rows(self) -> dict[str, object]:
        return {"observed rows": f"bottom {self.observed_rows} of {self.x_shape[1]}"}

    def condition_encoder(self, level: int = -1) -> nn.Module:
        _, size, _ = self.level_shape(level)
        return ObservedImage(self.operator(), size=None if size == self.x_shape[1] else (size, size))

    @property
    def cond_channels(self) -> int:
        return self.x_shape[0]


@dataclass(frozen=True, kw_only=True)
class SuperResolutionConfig(ExperimentConfig):
    """Super-resolution: y = A x + N(0, noise_std²), condition = y upsampled to the level size."""

    factor: int
    noise_std: float

    def forward_rows(self) -> dict[str, object]:
        return {"image (training)": _side(self.x_shape), "observation": _side(self.y_shape),
                "noise std": self.noise_std}

    def condition_encoder(self, level: int = -1) -> nn.Module:
        _, size, _ = self.level_shape(level)
        if size == self.x_shape[1]:
            return ResizedImage(factor=self.factor)  # convolutional: also for larger test images
        return ResizedImage(size=(size, size))

    @property
    def cond_channels(self) -> int:
        return self.y_shape[0]


@dataclass(frozen=True, kw_only=True)
class CTConfig(ExperimentConfig):
    """CT: the condition is the FBP image of the sinogram (METHOD.md §5), y_shape = x_shape."""

    n_angles: int
    angle_fraction: float
    n_detectors: int
    low_dose: bool

    @property
    def measured_angles(self) -> int:
        """How many of the ``n_angles`` equispaced angles in [0, π) are measured (the middle ones)."""
        return len(measured_angle_numbers(self.n_angles, self.angle_fraction))

    def forward_rows(self) -> dict[str, object]:
        numbers = measured_angle_numbers(self.n_angles, self.angle_fraction)
        angles = f"{len(numbers)} of {self.n_angles}"
        if len(numbers) < self.n_angles:
            angles += f" (nos. {numbers[0]}–{numbers[-1]})"
        return {"image": _side(self.x_shape), "angles measured": angles,
                "detector bins": self.n_detectors,
                "noise": f"Poisson, {LODOPAB_PHOTONS:,.0f} photons" if self.low_dose else "none"}

    def operator(self) -> ParallelBeamRadon:
        """The parallel-beam Radon transform on the measured angles (:func:`cmmd.operators.limited_angle`)."""
        return limited_angle(self.x_shape[1], self.n_angles, self.angle_fraction, n_detectors=self.n_detectors)

    def condition_encoder(self, level: int = -1) -> nn.Module:
        return ImageCondition()

    @property
    def cond_channels(self) -> int:
        return self.y_shape[0]


# ---------------------------------------------------------------------- shared reduced settings
def _smoke_net() -> NetSpec:
    return NetSpec(base_width=4, channel_mult=(1, 2), blocks=1)


def _cpu_net() -> NetSpec:  # ~0.06 M parameters; ~0.1–0.2 s per Adam step at batch 64 on 1 core (28×28)
    return NetSpec(base_width=16, channel_mult=(1, 2), blocks=1)


def _paper_small_image_net() -> NetSpec:
    # [code] unet.py: ch=32, ch_mult=(1, 2, 4), num_res_blocks=2 (attention only at resolution 256: unused)
    return NetSpec(base_width=32, channel_mult=(1, 2, 4), blocks=2)


def _smoke(cfg: ExperimentConfig, levels: tuple[Level, ...], **changes) -> ExperimentConfig:
    options = dict(profile="smoke", n_train=32, levels=levels, max_steps=4, train_steps=3, batch_size=8,
                   net=_smoke_net(), sample_batch=16)
    options.update(changes)
    return replace(cfg, **options)


# ---------------------------------------------------------------------- MNIST / FashionMNIST
@dataclass(frozen=True, kw_only=True)
class MNISTClassConditional(ClassConditionalConfig):
    NAME: ClassVar[str] = "mnist-classcond"

    @classmethod
    def paper(cls) -> "MNISTClassConditional":
        return cls(
            experiment=cls.NAME, profile="paper", dataset="mnist",
            x_shape=(1, 28, 28),  # METHOD.md §5
            y_shape=(10,),  # METHOD.md §5: label → 10·one-hot
            n_train=20_000,  # METHOD.md §5: first 20k train
            levels=(Level(
                size=28,
                step_size=1.0,  # METHOD.md §5: τ = 1
                first_exponent=4,  # METHOD.md §3: T_1 = 2^4
                patches=PatchSpec(
                    patch_size=5,  # METHOD.md §5
                    windows=(5, 10, 15, 20, 25),  # METHOD.md §5
                    weights=(0.1, 0.1, 0.1, 1.0, 1.0),  # METHOD.md §5
                    n_projections=500,  # METHOD.md §5
                    slicing="joint",  # [code] s_factor = sliced_factor(d + obs_dim)
                ),
                momentum=0.0,  # METHOD.md §5: m = 0
            ),),
            n_networks=50,  # METHOD.md §5: L = 50
            max_increment=1024,  # METHOD.md §3
            max_steps=30_000,  # METHOD.md §3: cap 30,000
            train_steps=5000,  # METHOD.md §5
            batch_size=100,  # METHOD.md §5
            lr=5e-4,  # METHOD.md §3
            grad_clip=None,  # [code] no clipping
            net=_paper_small_image_net(),  # [code]
            sample_batch=100,  # [code] networks applied in batches of batch_size
        )

    @classmethod
    def cpu(cls) -> "MNISTClassConditional":
        # 4,000 real digits offline (NOTES.md). Fully connected projections with momentum 0.7 (one step at
        # N = 4,000, P = 100 ≈ 0.04 s on 1 core) reach a higher class fidelity per second than patches on
        # this CPU (NOTES.md); 8 networks of T = 128 steps each (max_increment = 0: constant T), 160 Adam
        # steps each (the chapter adds a cosine learning-rate decay). Measured: chapter 4.
        level = Level(size=28, step_size=1.0, first_exponent=7, n_projections=100, momentum=0.7)
        return replace(cls.paper(), profile="cpu", n_train=4000, levels=(level,), n_networks=8, max_increment=0,
                       max_steps=128, train_steps=160, batch_size=64, lr=2e-3, net=_cpu_net(), sample_batch=500)

    @classmethod
    def smoke(cls) -> "MNISTClassConditional":
        paper = cls.paper()
        level = replace(paper.levels[0], first_exponent=1,
                        patches=replace(paper.levels[0].patches, n_projections=8))
        return _smoke(paper, (level,), n_networks=2)


@dataclass(frozen=True, kw_only=True)
class FashionMNISTClassConditional(ClassConditionalConfig):
    NAME: ClassVar[str] = "fashionmnist-classcond"

    @classmethod
    def paper(cls) -> "FashionMNISTClassConditional":
        mnist = MNISTClassConditional.paper()
        level = replace(mnist.levels[0], patches=PatchSpec(
            patch_size=9,  # METHOD.md §5
            windows=(9, 27),  # METHOD.md §5 (scales s = 0, 2 [code])
            weights=(0.8, 1.0),  # METHOD.md §5
            n_projections=500,  # METHOD.md §5
            slicing="joint",  # [code]
        ))
        return _as(cls, mnist, experiment=cls.NAME, dataset="fashionmnist",
                   n_train=20_000,  # METHOD.md §5
                   levels=(level,),  # τ = 1 (METHOD.md §5), T_1 = 2^4, m = 0 [code]
                   n_networks=50)  # METHOD.md §5: L = 50; 5,000 steps, B = 100 [code], as MNIST

    @classmethod
    def cpu(cls) -> "FashionMNISTClassConditional":
        # As MNIST's cpu profile (the first 4,000 of the 60,000 training images), but with the paper's patch
        # projections at P = 100 (≈ 0.1 s per step): judge accuracy 84% against 65% with full projections in
        # runs of the same length (measured for chapter 4).
        mnist = MNISTClassConditional.cpu()
        patches = replace(cls.paper().levels[0].patches, n_projections=100)
        level = replace(mnist.levels[0], patches=patches, n_projections=None)
        return _as(cls, mnist, experiment=cls.NAME, dataset="fashionmnist", levels=(level,))

    @classmethod
    def smoke(cls) -> "FashionMNISTClassConditional":
        paper = cls.paper()
        level = replace(paper.levels[0], first_exponent=1,
                        patches=replace(paper.levels[0].patches, n_projections=8))
        return _smoke(paper, (level,), n_networks=2)


@dataclass(frozen=True, kw_only=True)
class MNISTInpainting(InpaintingConfig):
    NAME: ClassVar[str] = "mnist-inpainting"

    @classmethod
    def paper(cls) -> "MNISTInpainting":
        cc = MNISTClassConditional.paper()
        level = replace(cc.levels[0], patches=PatchSpec(
            patch_size=5,  # METHOD.md §5
            windows=(5, 10, 15, 20),  # METHOD.md §5: windows 5..20
            weights=(0.25, 0.5, 0.85, 0.85),  # METHOD.md §5
            n_projections=500,  # METHOD.md §5
            slicing="joint",  # [code]
        ))
        return cls(
            **_common(cc), experiment=cls.NAME, profile="paper", dataset="mnist",
            y_shape=(10 * 28,),  # METHOD.md §5: the bottom 10 rows, no noise
            observed_rows=10,  # METHOD.md §5
            n_train=20_000,  # METHOD.md §5
            levels=(level,),  # τ = 1 (METHOD.md §5)
            n_networks=90,  # METHOD.md §5: L = 90
        )

    @classmethod
    def cpu(cls) -> "MNISTInpainting":
        # The flow and networks of MNIST class-conditional's cpu profile (full projections P = 100, 8 networks of
        # 128 steps) but without momentum (the paper's m = 0): with m = 0.7 this flow oscillates (joint MMD² stuck
        # near 0.5 after 300 steps at N = 4,000, against 0.02 with m = 0; measured for chapter 5).
        mnist_cpu = MNISTClassConditional.cpu()
        level = replace(mnist_cpu.levels[0], momentum=0.0)
        return replace(cls.paper(), profile="cpu", levels=(level,), max_increment=mnist_cpu.max_increment,
                       **_reduced(mnist_cpu))

    @classmethod
    def smoke(cls) -> "MNISTInpainting":
        paper = cls.paper()
        level = replace(paper.levels[0], first_exponent=1, patches=replace(paper.levels[0].patches, n_projections=8))
        return _smoke(paper, (level,), n_networks=2)


@dataclass(frozen=True, kw_only=True)
class FashionMNISTInpainting(InpaintingConfig):
    NAME: ClassVar[str] = "fashionmnist-inpainting"

    @classmethod
    def paper(cls) -> "FashionMNISTInpainting":
        mnist = MNISTInpainting.paper()
        level = replace(mnist.levels[0], patches=PatchSpec(
            patch_size=7,  # METHOD.md §5
            windows=(7, 14, 21),  # METHOD.md §5
            weights=(0.4, 0.6, 0.85),  # [code] run_fashionmnist_inpainting.py (not in METHOD.md's table)
            n_projections=500,  # METHOD.md §5
            slicing="joint",  # [code]
        ))
        return _as(cls, mnist, experiment=cls.NAME, dataset="fashionmnist", levels=(level,),
                   n_networks=90)  # METHOD.md §5: L = 90; N = 20,000, 10 rows, τ = 1

    @classmethod
    def cpu(cls) -> "FashionMNISTInpainting":
        # As MNIST inpainting's cpu profile (the first 4,000 of the 60,000 training images), but with momentum 0.7
        # as in the class-conditional cpu profiles: posterior-mean PSNR 16.2 dB against 15.9 dB with m = 0
        # (measured for chapter 5, on its evaluation images).
        mnist = MNISTInpainting.cpu()
        level = replace(mnist.levels[0], momentum=0.7)
        return _as(cls, mnist, experiment=cls.NAME, dataset="fashionmnist", levels=(level,))

    @classmethod
    def smoke(cls) -> "FashionMNISTInpainting":
        paper = cls.paper()
        level = replace(paper.levels[0], first_exponent=1, patches=replace(paper.levels[0].patches, n_projections=8))
        return _smoke(paper, (level,), n_networks=2)


def _common(cfg: ExperimentConfig) -> dict:
    """The fields MNIST inpainting shares with MNIST class-conditional (METHOD.md §3 and §5, [code])."""
    return dict(x_shape=cfg.x_shape, max_increment=cfg.max_increment, max_steps=cfg.max_steps,
                train_steps=cfg.train_steps, batch_size=cfg.batch_size, lr=cfg.lr, grad_clip=cfg.grad_clip,
                net=cfg.net, sample_batch=cfg.sample_batch)


def _as(cls, cfg: ExperimentConfig, **changes) -> ExperimentConfig:
    """An instance of ``cls`` with the fields of ``cfg`` (of a sibling class) and ``changes``."""
    values = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.init}
    values.update(changes)
    return cls(**values)


def _reduced(cfg: ExperimentConfig) -> dict:
    return dict(n_train=cfg.n_train, n_networks=cfg.n_networks, max_steps=cfg.max_steps,
                train_steps=cfg.train_steps, batch_size=cfg.batch_size, lr=cfg.lr, net=cfg.net,
                sample_batch=cfg.sample_batch)


# ---------------------------------------------------------------------- CIFAR-10 and CelebA (pyramids)
def _cifar_levels(totals: tuple[int, int, int, int]) -> tuple[Level, ...]:
    """[code] run_cifar_*.py: down_factors 8, 4, 2, 1; step_sizes .5, 1, 1, 1; step_exps 4, 10, 13, 13;
    full projections with P = max(500, d) below 32 px; at 32 px p = 7, scales 0..3 (windows 7..28),
    weights 1, P = 400 (METHOD.md §5)."""
    patches = PatchSpec(patch_size=7, windows=(7, 14, 21, 28), weights=(1.0, 1.0, 1.0, 1.0), n_projections=400)
    return (
        Level(size=4, step_size=0.5, first_exponent=4, total_steps=totals[0], n_projections=max(500, 3 * 4 * 4)),
        Level(size=8, step_size=1.0, first_exponent=10, total_steps=totals[1], n_projections=max(500, 3 * 8 * 8)),
        Level(size=16, step_size=1.0, first_exponent=13, total_steps=totals[2], n_projections=max(500, 3 * 16 * 16)),
        Level(size=32, step_size=1.0, first_exponent=13, total_steps=totals[3], patches=patches),
    )


def _small_pyramid(sizes: tuple[int, ...], top: PatchSpec, *, steps: int, n_full: int) -> tuple[Level, ...]:
    """Reduced pyramid: same sizes and τ as the paper, ``steps`` flow steps per level, T_1 = 2^4."""
    taus = (0.5,) + (1.0,) * (len(sizes) - 1)
    levels = [Level(size=s, step_size=t, first_exponent=4, total_steps=steps, n_projections=n_full)
              for s, t in zip(sizes[:-1], taus[:-1])]
    levels.append(Level(size=sizes[-1], step_size=1.0, first_exponent=4, total_steps=steps, patches=top))
    return tuple(levels)


@dataclass(frozen=True, kw_only=True)
class CIFAR10ClassConditional(ClassConditionalConfig):
    NAME: ClassVar[str] = "cifar10-classcond"

    @classmethod
    def paper(cls) -> "CIFAR10ClassConditional":
        return cls(
            experiment=cls.NAME, profile="paper", dataset="cifar10",
            x_shape=(3, 32, 32),  # METHOD.md §5
            y_shape=(10,),  # METHOD.md §5: label
            n_train=40_000,  # METHOD.md §5
            levels=_cifar_levels((700_000, 700_000, 700_000, 1_000_000)),  # [code] num_steps; ≈156 networks
            n_networks=None,
            max_increment=1024, max_steps=30_000,  # [code]
            train_steps=4000,  # [code] run_cifar_classcond.py
            batch_size=100,  # [code]
            lr=5e-4,  # METHOD.md §3
            net=_paper_small_image_net(),  # [code]
            sample_batch=100,  # [code]
            momentum_increment=0.01, momentum_max=0.8,  # METHOD.md §5: momentum up to .8 at coarse levels [code]
            upsample_noise=0.07,  # METHOD.md §4
        )

    @classmethod
    def cpu(cls) -> "CIFAR10ClassConditional":
        top = PatchSpec(patch_size=7, windows=(7, 14, 21, 28), weights=(1.0,) * 4, n_projections=100)
        return replace(cls.paper(), profile="cpu", n_train=2000, levels=_small_pyramid((4, 8, 16, 32), top,
                       steps=600, n_full=200), max_steps=256, train_steps=200, batch_size=64, lr=1e-3,
                       net=_cpu_net(), sample_batch=500)

    @classmethod
    def smoke(cls) -> "CIFAR10ClassConditional":
        top = PatchSpec(patch_size=7, windows=(7, 28), weights=(1.0, 1.0), n_projections=8)
        levels = tuple(replace(lv, first_exponent=1, total_steps=2) for lv in
                       _small_pyramid((4, 8, 16, 32), top, steps=2, n_full=8))
        return _smoke(cls.paper(), levels)


@dataclass(frozen=True, kw_only=True)
class CIFAR10Inpainting(InpaintingConfig):
    NAME: ClassVar[str] = "cifar10-inpainting"

    @classmethod
    def paper(cls) -> "CIFAR10Inpainting":
        cc = CIFAR10ClassConditional.paper()
        return cls(
            **_common(cc), experiment=cls.NAME, profile="paper", dataset="cifar10",
            y_shape=(3 * 16 * 32,),  # METHOD.md §5: bottom 16 rows
            observed_rows=16,  # METHOD.md §5
            n_train=30_000,  # METHOD.md §5
            levels=_cifar_levels((600_000, 600_000, 600_000, 1_000_000)),  # [code] num_steps; ≈147 networks
            n_networks=None,
            momentum_increment=0.01, momentum_max=0.8,  # [code], as class-conditional CIFAR-10
            upsample_noise=0.07,  # METHOD.md §4
        ).with_changes(train_steps=5000)  # [code] run_cifar_inpainting.py: 5,000 steps (class-cond.: 4,000)

    @classmethod
    def cpu(cls) -> "CIFAR10Inpainting":
        cpu = CIFAR10ClassConditional.cpu()
        return replace(cls.paper(), profile="cpu", **{k: getattr(cpu, k) for k in (
            "n_train", "levels", "max_steps", "train_steps", "batch_size", "lr", "net", "sample_batch")})

    @classmethod
    def smoke(cls) -> "CIFAR10Inpainting":
        smoke = CIFAR10ClassConditional.smoke()
        return replace(cls.paper(), profile="smoke", **{k: getattr(smoke, k) for k in (
            "n_train", "levels", "max_steps", "train_steps", "batch_size", "net", "sample_batch")})


@dataclass(frozen=True, kw_only=True)
class CelebASuperResolution(SuperResolutionConfig):
    NAME: ClassVar[str] = "celeba-superres"

    def operator(self) -> BicubicDownsample:
        return BicubicDownsample(self.x_shape[1], factor=self.factor, channels=self.x_shape[0])

    @classmethod
    def paper(cls) -> "CelebASuperResolution":
        # [code] scales [0, 2] at 32 px and [0, 2, 6] at 64 px, weights step_sizes_scale[s] = .3, 1, 1
        patches_32 = PatchSpec(patch_size=7, windows=(7, 21), weights=(0.3, 1.0), n_projections=500)
        patches_64 = PatchSpec(patch_size=7, windows=(7, 21, 49), weights=(0.3, 1.0, 1.0), n_projections=500)
        return cls(
            experiment=cls.NAME, profile="paper", dataset="celeba",
            x_shape=(3, 64, 64),  # METHOD.md §5: 64×64 crop
            y_shape=(3, 16, 16),  # METHOD.md §5: bicubic ↓4 to 16×16
            factor=4,  # METHOD.md §5
            noise_std=0.01,  # METHOD.md §5: + N(0, 0.01²)
            n_train=20_000,  # METHOD.md §5
            levels=(  # [code] down_factors 8, 4, 2, 1; step_sizes .5, 1, 1, 1; step_exps 4, 10, 13, 13
                Level(size=8, step_size=0.5, first_exponent=4, total_steps=600_000,
                      n_projections=max(500, 3 * 8 * 8)),
                Level(size=16, step_size=1.0, first_exponent=10, total_steps=600_000,
                      n_projections=max(500, 3 * 16 * 16)),
                Level(size=32, step_size=1.0, first_exponent=13, total_steps=600_000, patches=patches_32),
                Level(size=64, step_size=1.0, first_exponent=13, total_steps=1_000_000, patches=patches_64),
            ),  # METHOD.md §5: local at 32/64 px, P = 500; ≈147 networks
            n_networks=None,
            max_increment=1024, max_steps=30_000,  # [code]
            train_steps=5000,  # [code] run_celeba_superres.py
            batch_size=10,  # METHOD.md §5: B = 10
            lr=5e-4,  # METHOD.md §3
            net=_paper_small_image_net(),  # [code]
            sample_batch=10,  # [code]
            momentum_increment=0.01, momentum_max=0.8,  # [code]
            upsample_noise=0.07,  # METHOD.md §4 [code]
        )

    @classmethod
    def cpu(cls) -> "CelebASuperResolution":
        top = PatchSpec(patch_size=7, windows=(7, 21, 49), weights=(0.3, 1.0, 1.0), n_projections=100)
        return replace(cls.paper(), profile="cpu", n_train=1000, levels=_small_pyramid((8, 16, 32, 64), top,
                       steps=400, n_full=200), max_steps=256, train_steps=150, batch_size=16, lr=1e-3,
                       net=_cpu_net(), sample_batch=100)

    @classmethod
    def smoke(cls) -> "CelebASuperResolution":
        top = PatchSpec(patch_size=7, windows=(7, 49), weights=(0.3, 1.0), n_projections=8)
        levels = tuple(replace(lv, first_exponent=1, total_steps=2) for lv in
                       _small_pyramid((8, 16, 32, 64), top, steps=2, n_full=8))
        return _smoke(cls.paper(), levels)


# ---------------------------------------------------------------------- materials (SiC)
@dataclass(frozen=True, kw_only=True)
class MaterialsSuperResolution(SuperResolutionConfig):
    """SiC microstructures: 100×100 tiles, 16×16 Gaussian blur σ = 2, stride 4 (periodic) → 25×25, noise .01."""

    NAME: ClassVar[str] = "materials-superres"
    TILE_OBSERVATIONS: ClassVar[tuple[str, ...]] = ("periodic", "cropped")
    kernel_size: int = 16
    blur_sigma: float = 2.0
    test_size: int = 600
    test_padding: int = 40
    tile_observations: str = "periodic"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tile_observations not in self.TILE_OBSERVATIONS:
            raise ValueError(f"tile_observations must be one of {self.TILE_OBSERVATIONS}, "
                             f"got {self.tile_observations!r}")
        if self.x_shape[1] % self.factor:
            raise ValueError(f"the tile side {self.x_shape[1]} must be divisible by the factor {self.factor}")

    def forward_rows(self) -> dict[str, object]:
        observed = "A of each tile (periodic)" if self.tile_observations == "periodic" else "cut from A of the slice"
        return super().forward_rows() | {"tile observations": observed}

    def operator(self, size: int | tuple[int, int] | None = None) -> BlurDownsample:
        """The blur-and-stride operator on the periodic grid of ``size`` (side or (H, W); default: the tile)."""
        return BlurDownsample(size or self.x_shape[1], kernel_size=self.kernel_size, sigma=self.blur_sigma,
                              stride=self.factor)

    def tile_pairs(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every training tile of the slices and its noiseless observation, in :func:`materials_tiles` order.

        ``tile_observations="periodic"`` applies A to each tile on its own periodic grid (the authors' code), so
        the observed pixels next to a tile edge mix in the opposite edge; ``"cropped"`` applies A to each whole
        slice and cuts the observation at the tile's place, so that every observed pixel is what the same
        place of a large image gives: the situation of the 600×600 test image.

        Args:
            slices: training images (S, 1, H, W), H and W divisible by ``factor``.

        Returns:
            tiles (S·⌊H/t⌋·⌊W/t⌋, 1, t, t) and observations (same count, 1, t/factor, t/factor), t = ``x_shape[1]``.
        """
        tile = self.x_shape[1]
        tiles = materials_tiles(slices, tile=tile, n_tiles=None)
        if self.tile_observations == "periodic":
            return tiles, self.operator()(tiles)
        whole = self.operator(tuple(slices.shape[-2:]))(slices)  # BlurDownsample refuses sides not divisible
        return tiles, materials_tiles(whole, tile=tile // self.factor, n_tiles=None)

    @classmethod
    def paper(cls) -> "MaterialsSuperResolution":
        return cls(
            experiment=cls.NAME, profile="paper", dataset="materials",
            x_shape=(1, 100, 100),  # METHOD.md §5: 100×100 tiles
            y_shape=(1, 25, 25),  # METHOD.md §5: → 25×25
            factor=4,  # METHOD.md §5: stride 4
            kernel_size=16, blur_sigma=2.0,  # METHOD.md §5: 16×16 Gaussian blur σ = 2
            noise_std=0.01,  # METHOD.md §5: + N(0, 0.01²)
            test_size=600,  # METHOD.md §5: one 600×600 test image, flow applied fully convolutionally
            test_padding=40,  # [code] reflect padding 40 px at test time, cropped after sampling
            n_train=1000,  # METHOD.md §5: first 1,000 tiles
            levels=(Level(
                size=100,
                step_size=1.0,  # METHOD.md §5: τ = 1
                first_exponent=3,  # METHOD.md §3: T_1 = 2^3 for materials
                n_projections=5000,  # METHOD.md §5: full, P = 5,000 (= d/2 [code])
                momentum=0.7,  # METHOD.md §5: momentum 0.7
            ),),
            n_networks=30,  # METHOD.md §5: L = 30
            max_increment=1024,  # METHOD.md §3
            max_steps=10_000,  # METHOD.md §3: cap 10,000 for materials
            train_steps=4000,  # METHOD.md §5
            batch_size=10,  # METHOD.md §5
            lr=5e-4,  # METHOD.md §3
            net=NetSpec(base_width=32, channel_mult=(1, 1, 2, 2, 4, 4), blocks=1, norm_groups=None),
            # [code] dival get_unet_model(scales=6, use_norm=False): widths 32, 32, 64, 64, 128, 128
            sample_batch=10,  # [code]
        )

    @classmethod
    def cpu(cls) -> "MaterialsSuperResolution":
        # 32×32 tiles (→ 8×8 observations; the flow and the UNet are convolutional, the test image is the
        # same), observed as parts of their slice ("cropped"): with periodic tiles a quarter or more of the observed
        # pixels mix in the opposite tile edge (errors of 3σ there), which the 600×600 test image never shows.
        # The exact gradient instead of P projections: no projection noise, so the paper's momentum 0.7 converges
        # (with P = 500 it diverged). Measured on the test image (chapter 6's seed, 8 samples; bicubic 24.80 dB):
        # 60×60 tiles, periodic, N = 1,000, 14 networks 23.9 dB in a 28-min fit; 32×32 cropped 24.4 dB in 9 min;
        # N = 1,500 and 10 networks 24.9 dB (24.86 with 16 samples); N = 2,000 and 9 networks 24.5 (16 samples).
        # 150 Adam steps per network: 450 fit the training particles better and the test image far worse
        # (21.2 dB); 75 gave 25.0 dB but almost identical samples (chapter 6 tabulates these trials).
        paper = cls.paper()
        level = replace(paper.levels[0], size=32, n_projections=None, momentum=0.7)
        return replace(paper, profile="cpu", x_shape=(1, 32, 32), y_shape=(1, 8, 8), tile_observations="cropped",
                       n_train=1500, levels=(level,), n_networks=10, max_steps=256, train_steps=150, batch_size=8,
                       lr=2e-3, net=NetSpec(base_width=16, channel_mult=(1, 2, 2), blocks=1, norm_groups=None),
                       sample_batch=50)

    @classmethod
    def smoke(cls) -> "MaterialsSuperResolution":
        paper = cls.paper()
        level = replace(paper.levels[0], first_exponent=1, n_projections=8)
        return _smoke(paper, (level,), n_networks=2,
                      net=NetSpec(base_width=4, channel_mult=(1, 2), blocks=1, norm_groups=None))


# ---------------------------------------------------------------------- CT (LoDoPaB)
def _ct_patches(n_projections: int) -> PatchSpec:
    """[code] run_CT.py: p = 15, scales s = 0..10 and 20 (windows 15·(s+1)); weights .1 for s < 6,
    .2 for s < 10, .5 for s < 20, 1 for s = 20; the FBP image cut at the same window."""
    scales = tuple(range(11)) + (20,)
    weights = tuple(0.1 if s < 6 else 0.2 if s < 10 else 0.5 if s < 20 else 1.0 for s in scales)
    return PatchSpec(patch_size=15, windows=tuple(15 * (s + 1) for s in scales), weights=weights,
                     n_projections=n_projections, y_mode="window")


@dataclass(frozen=True, kw_only=True)
class _CTBase(CTConfig):
    @classmethod
    def _paper(cls, *, angle_fraction: float, low_dose: bool) -> "_CTBase":
        return cls(
            experiment=cls.NAME, profile="paper", dataset="lodopab",
            x_shape=(1, 362, 362),  # METHOD.md §5: LoDoPaB 362×362
            y_shape=(1, 362, 362),  # METHOD.md §5: y = FBP image
            n_angles=1000,  # METHOD.md §5: 1,000 angles
            angle_fraction=angle_fraction,  # METHOD.md §5: limited angle keeps 800 of 1,000
            n_detectors=513,  # LoDoPaB's detector (dival)
            low_dose=low_dose,
            n_train=500,  # METHOD.md §5: first 500 train pairs
            levels=(Level(
                size=362,
                step_size=1.0,  # METHOD.md §5: τ = 1
                first_exponent=4,  # METHOD.md §3: T_1 = 2^4
                patches=_ct_patches(400),  # METHOD.md §5: p = 15, 12 scales, P = 400; windows/weights [code]
                momentum=0.0,  # [code] no momentum
            ),),
            n_networks=40,  # METHOD.md §5: L = 40
            max_increment=1024,  # METHOD.md §3
            max_steps=10_000,  # METHOD.md §3: cap 10,000 for CT
            train_steps=4000,  # [code] run_CT.py
            batch_size=10,  # METHOD.md §3: batch 10 for large images [code]
            lr=5e-4,  # METHOD.md §3
            grad_clip=1.0,  # METHOD.md §5: grad-clip 1
            net=NetSpec(base_width=32, channel_mult=(1, 1, 2, 2, 4), blocks=1, norm_groups=None),
            # [code] dival get_unet_model (scales=5, use_norm=False): widths 32, 32, 64, 64, 128
            sample_batch=10,  # [code]
        )

    @classmethod
    def cpu(cls) -> "_CTBase":
        # Reduced resolution 64×64 (procedural phantoms offline, NOTES.md), 100 angles (limited angle: the
        # middle 80) and 64 detector bins. Patch projections p = 4 at windows 4..64; one 4×4 window per step
        # covers 1/256 of the image, too little to remove the pixel noise of the initial particles in the
        # ~1,300 flow steps a CPU affords, so the 4×4 and 8×8 scales are drawn 12 and 4 times per step (each
        # its own random window, weight 0.1: larger weights diverged). Step size τ = 0.5: with the paper's τ = 1
        # the sliced noise kept the joint MMD² near 0.35 after every flow and the later networks got worse.
        # Measured: chapter 7.
        paper = cls.paper()
        windows = (4,) * 12 + (8,) * 4 + (16, 32, 64)
        weights = (0.1,) * 16 + (0.2, 0.5, 1.0)
        patches = PatchSpec(patch_size=4, windows=windows, weights=weights, n_projections=100, y_mode="window")
        level = replace(paper.levels[0], size=64, step_size=0.5, patches=patches)
        return replace(paper, profile="cpu", x_shape=(1, 64, 64), y_shape=(1, 64, 64), n_angles=100,
                       n_detectors=64, n_train=300, levels=(level,), n_networks=10, max_steps=256, train_steps=200,
                       batch_size=8, lr=1e-3, net=NetSpec(base_width=16, channel_mult=(1, 2, 2), blocks=1,
                                                          norm_groups=None),
                       sample_batch=50)

    @classmethod
    def smoke(cls) -> "_CTBase":
        paper = cls.paper()
        patches = PatchSpec(patch_size=4, windows=(4, 32), weights=(0.1, 1.0), n_projections=8, y_mode="window")
        level = replace(paper.levels[0], size=32, first_exponent=1, patches=patches)
        return _smoke(paper, (level,), x_shape=(1, 32, 32), y_shape=(1, 32, 32), n_angles=24, n_detectors=32,
                      n_networks=2,
                      net=NetSpec(base_width=4, channel_mult=(1, 2), blocks=1, norm_groups=None))


@dataclass(frozen=True, kw_only=True)
class CTLowDose(_CTBase):
    NAME: ClassVar[str] = "ct-lowdose"

    @classmethod
    def paper(cls) -> "CTLowDose":
        return cls._paper(angle_fraction=1.0, low_dose=True)  # METHOD.md §5: low-dose sinogram, all angles


@dataclass(frozen=True, kw_only=True)
class CTLimitedAngle(_CTBase):
    NAME: ClassVar[str] = "ct-limited-angle"

    @classmethod
    def paper(cls) -> "CTLimitedAngle":
        # METHOD.md §5: 800 of 1,000 angles; [code] the authors take the observations of LoDoPaB's
        # low-dose sinograms on angles 100..899, so the photon noise of the low-dose setting stays.
        return cls._paper(angle_fraction=0.8, low_dose=True)


# ---------------------------------------------------------------------- registry
EXPERIMENTS: dict[str, type[ExperimentConfig]] = {
    cls.NAME: cls
    for cls in (
        MNISTClassConditional, FashionMNISTClassConditional, CIFAR10ClassConditional,
        MNISTInpainting, FashionMNISTInpainting, CIFAR10Inpainting,
        MaterialsSuperResolution, CelebASuperResolution, CTLowDose, CTLimitedAngle,
    )
}


def get_config(experiment: str, profile: str) -> ExperimentConfig:
    """The settings of ``experiment`` (a key of :data:`EXPERIMENTS`) in ``profile`` (smoke, cpu, paper)."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {', '.join(map(repr, EXPERIMENTS))}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(map(repr, PROFILES))}")
    return EXPERIMENTS[experiment].for_profile(profile)


def settings_table(summaries: dict[str, dict[str, dict[str, object]]]) -> str:
    """Markdown tables of :meth:`ExperimentConfig.summary` rows side by side: ``summaries[experiment][profile]`` →
    one table per experiment, one column per profile (a row missing from a profile shows —).

    A chapter shows it with ``IPython.display.Markdown``; the book renders the tables, which wrap to the
    page's width (a text block of the same rows ran off the screen of a phone).
    """
    blocks = []
    for name, by_profile in summaries.items():
        columns = list(by_profile.values())
        labels = list(dict.fromkeys(label for column in columns for label in column))
        lines = [f"**{name}**", "", "| setting | " + " | ".join(f"profile `{p}`" for p in by_profile) + " |",
                 "|---" * (len(columns) + 1) + "|"]
        lines += ["| " + " | ".join([_markdown(label)] + [_markdown(_cell(c.get(label, "—"))) for c in columns]) + " |"
                  for label in labels]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


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
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


# ---------------------------------------------------------------------- GPU memory
CUDA_CONTEXT_GB = 0.5  # CUDA context and cuBLAS/cuDNN workspaces (not seen by torch's allocator)
ALLOCATOR_MARGIN = 1.15  # caching-allocator fragmentation


def estimate_gpu_memory_gb(config: ExperimentConfig, *, level: int | None = None) -> float:
    r"""Peak GPU memory (GiB) of training ``config`` with :class:`cmmd.model.ConditionalMMDFlow`, from tensor sizes.

    For a level with N particles of dimension d (C·s·s), condition dimension n, D = d + n, float32:

    - **data**: N·(d_full + n), resident throughout;
    - **flow phase**: the joint particles, joint targets and their gradient (3·N·D), x_old, the velocity and
      the update temporary (3·N·d), plus one step's work: (full projections) the stacked points ((N+M)·D),
      the directions (P·D) and one block of
      the batched sort, at most ``DEFAULT_BLOCK`` entries of ~34 bytes (values, int64 permutation, counts);
      (patch projections): the cut windows of particles, targets (and y) twice (cut + pooled copy), their
      pooled features and the same sort block;
    - **network phase**: the flowed joint particles (N·D), x_old, velocity, displacement and Φ applied
      (4·N·d), plus parameters, gradients and two Adam moments (16 bytes per parameter) plus twice the
      outputs of all layers for one batch, counted by running the UNet on the ``meta`` device (no memory,
      no compute) with forward hooks. Autograd saves 0.8–0.95 times those outputs (measured with
      ``torch.autograd.graph.saved_tensors_hooks``), so the factor 2 (saved tensors and the gradients in
      flight) is an upper bound. Applying Φ in batches of ``sample_batch`` is counted without the factor 2;

    peak = (data + max(flow phase, network phase)) · 1.15 (allocator margin) + 0.5 GiB (CUDA context).
    Without ``level``, the largest level. Used by each ``paper`` chapter to state that it fits a 16 GB GPU.
    """
    indices = range(len(config.levels)) if level is None else [config.level_index(level)]
    return max(_level_bytes(config, i) for i in indices) * ALLOCATOR_MARGIN / 2**30 + CUDA_CONTEXT_GB


def _level_bytes(config: ExperimentConfig, index: int) -> float:
    f32 = 4
    n = config.n_train
    d = math.prod(config.level_shape(index))
    n_y = math.prod(config.y_shape)
    joint = d + n_y
    data = f32 * n * (math.prod(config.x_shape) + n_y)
    # flow: joint particles, joint targets, their gradient (N·D each); x_old, velocity, update temporary (N·d)
    flow = f32 * (3 * n * joint + 3 * n * d) + _flow_step_bytes(config, index)
    # network: the flowed joint particles; x_old, velocity, displacement, Φ applied (N·d)
    network = f32 * (n * joint + 4 * n * d) + _network_bytes(config, index)
    return data + max(flow, network)


def _sort_block_bytes(points: int, n_projections: int) -> float:
    entries = min(n_projections * points, max(points, DEFAULT_BLOCK))
    return 34 * entries


def _flow_step_bytes(config: ExperimentConfig, index: int) -> float:
    f32, lv = 4, config.levels[index]
    n = config.n_train
    points = 2 * n
    c, s, _ = config.level_shape(index)
    n_y = math.prod(config.y_shape)
    if lv.patches is None:
        p = lv.n_projections or 0
        dim = c * s * s + n_y
        if p == 0:  # exact gradient: one block of pairwise distances
            return f32 * (points * dim + 2 * DEFAULT_BLOCK)
        return f32 * (points * dim + p * dim) + _sort_block_bytes(points, p)
    spec = lv.patches
    w = max(spec.windows)
    channels = c + (config.y_shape[0] if spec.y_mode == "window" else 0)
    k = channels * spec.patch_size**2 + (0 if spec.y_mode == "window" else n_y)
    windows = f32 * 2 * points * channels * w * w  # cut window and its pooled copy
    upsampled = f32 * n * c * w * w
    features = f32 * (points * k + spec.n_projections * k + n * k)
    return windows + upsampled + features + _sort_block_bytes(points, spec.n_projections)


def _network_bytes(config: ExperimentConfig, index: int) -> float:
    f32 = 4
    activations, parameters = _unet_activation_numel(config, index)
    train = f32 * (4 * parameters + 2 * config.batch_size * activations)
    apply = f32 * (parameters + config.sample_batch * activations)
    return max(train, apply)


def _unet_activation_numel(config: ExperimentConfig, index: int) -> tuple[int, int]:
    """(entries of all module outputs for ONE sample, parameter count) of the level's UNet, on the meta device."""
    c, s, _ = config.level_shape(index)
    with torch.device("meta"):  # the encoder is cheap: feed its output shape directly
        net = UNet(c, config.cond_channels, condition_encoder=ImageCondition(), **config.unet_kwargs())
    total = [0]

    def count(module, inputs, output):
        if isinstance(output, torch.Tensor) and not list(module.children()):
            total[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in net.modules()]
    x = torch.empty(1, c, s, s, device="meta")
    cond = torch.empty(1, config.cond_channels, s, s, device="meta")
    try:
        with torch.no_grad():
            net(x, cond)
    finally:
        for hook in hooks:
            hook.remove()
    return total[0], sum(p.numel() for p in net.parameters())
