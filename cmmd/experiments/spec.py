r"""The settings record of one experiment in one profile, and what it builds [method §3–§5].

An :class:`ExperimentConfig` holds the task (:mod:`cmmd.experiments.tasks`), the shapes, the training pairs N,
one or more resolution :class:`Level` s (a single one for most experiments, four for the coarse-to-fine pyramids
of CIFAR-10 and CelebA [method §4]) and how the networks are trained. From it:

- :meth:`ExperimentConfig.schedules` the flow steps and momenta of every network of every level, computed once
  (:class:`cmmd.flowspec.Schedule`);
- :meth:`ExperimentConfig.flow_config` the :class:`cmmd.model.FlowConfig` of a level (schedule, projections,
  training), :meth:`ExperimentConfig.network` its UNet, :meth:`ExperimentConfig.build_flow` the untrained flow;
- :meth:`ExperimentConfig.with_changes` a copy with some settings changed: how every reduced profile is derived
  from the paper's settings (:class:`Changes`).

Profiles: ``paper`` (the authors' values; each field of a ``paper`` record says where it comes from), ``cpu``
(reduced, for the committed book on 2 CPU cores) and ``smoke`` (tiny, proves the code path runs).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import torch
from torch import nn

from cmmd._checks import check_nonnegative_int, check_number, check_positive_int
from cmmd.experiments.tasks import Task
from cmmd.flowspec import Patches, Projection, Schedule, check_projection, with_n_projections
from cmmd.model import ConditionalMMDFlow, FlowConfig
from cmmd.nets import UNet
from cmmd.pyramid import PyramidFlow

#: The profiles every notebook and config accepts, with what each one means (README.md, "The book").
PROFILES: dict[str, str] = {
    "smoke": "seconds per notebook; proves that the code runs, not the science",
    "cpu": "minutes per notebook on 2 CPU cores; reduced settings that show the effect honestly, "
    "not the paper's numbers",
    "paper": "the paper's settings; needs a GPU and hours",
}


def check_profile(profile: str) -> str:
    """``profile`` if it is one of :data:`PROFILES`, else a ``ValueError`` that lists them."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(map(repr, PROFILES))}")
    return profile


@dataclass(frozen=True, kw_only=True)
class NetSpec:
    """Size of the :class:`cmmd.nets.UNet`: width of the first level, multipliers per level, blocks per level,
    GroupNorm groups (``None``: no normalisation)."""

    base_width: int
    channel_mult: tuple[int, ...]
    blocks: int
    norm_groups: int | None = 8

    def __str__(self) -> str:
        return ", ".join(str(self.base_width * m) for m in self.channel_mult)


@dataclass(frozen=True, kw_only=True)
class Level:
    """One resolution of the flow (the only one, or one pyramid level).

    Attributes:
        size: image side at this level.
        step_size: τ of the Euler step.
        first_exponent: e with T_1 = 2^e flow steps for the first network of the level.
        total_steps: pyramid levels train networks until this many flow steps were simulated at the level
            [code: ``num_steps``]; ``None``: the config's ``n_networks``.
        projection: :class:`~cmmd.flowspec.Exact`, :class:`~cmmd.flowspec.Sliced` or :class:`~cmmd.flowspec.Patches`.
        momentum: m of the first network of the level (see ``ExperimentConfig.momentum_increment``).
    """

    size: int
    step_size: float
    first_exponent: int
    projection: Projection
    total_steps: int | None = None
    momentum: float = 0.0


@dataclass(frozen=True)
class Changes:
    """A reduced profile: the settings that differ from the paper's, and why.

    ``values`` maps fields of :class:`ExperimentConfig` to their new values; the key ``level`` maps fields of
    :class:`Level` (and ``n_projections``, which sets P of the level's projections) to new values for every level.
    """

    why: str
    values: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """The settings of one experiment in one profile.

    Attributes:
        experiment: registry name, e.g. ``"mnist-classcond"``.
        profile: ``"smoke"``, ``"cpu"`` or ``"paper"``.
        task: the forward model's parameters (:mod:`cmmd.experiments.tasks`).
        x_shape: (C, H, W) of one ground truth at full resolution.
        y_shape: shape of one condition (what the flow is conditioned on).
        n_train: N, training pairs = particles (the first N of the training split).
        levels: resolution levels, coarse to fine.
        n_networks: L for single-level experiments; ``None`` for pyramids (set by each level's ``total_steps``).
        max_increment, max_steps: growth bound and cap of T_l [method §3].
        train_steps, batch_size, lr, grad_clip: Adam training of each network.
        net: UNet size.
        sample_batch: rows pushed through a network at once when applying it.
        momentum_increment, momentum_max: pyramids [code]: m grows by the increment after each network, carried
            across the full-projection levels, up to the maximum; patch levels use m = 0.
        upsample_noise: pyramids: σ of the noise added when particles move one level up.
        changes: for a reduced profile, the :class:`Changes` that derived it from the paper's settings.
    """

    experiment: str
    profile: str
    task: Task
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
    changes: Changes | None = None

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if not self.levels:
            raise ValueError("a config needs at least one level")
        if self.levels[-1].size != self.x_shape[1]:
            raise ValueError(f"the last level must be the full resolution {self.x_shape[1]}, got {self.levels[-1].size}")
        if self.n_networks is None and any(level.total_steps is None for level in self.levels):
            raise ValueError("without n_networks every level needs total_steps")
        self._check_fields()

    def _check_fields(self) -> None:
        """Validate every field at construction (also after :meth:`with_changes`); messages name the field."""
        name = type(self).__name__
        for field_name, shape, length in (("x_shape", self.x_shape, 3), ("y_shape", self.y_shape, None)):
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
            check_projection(f"{where}.projection", level.projection)
            if level.total_steps is not None:
                check_positive_int(f"{where}.total_steps (or None)", level.total_steps)
            if k and (level.size <= self.levels[k - 1].size or level.size % self.levels[k - 1].size):
                raise ValueError(f"{where}.size = {level.size} must be a larger multiple of the size "
                                 f"{self.levels[k - 1].size} of the level below")
        try:  # what the levels build checks the rest: momenta, patch windows
            for k in range(len(self.levels)):
                self.flow_config(k).projection.gradient(self.level_shape(k), self.y_shape)
        except ValueError as error:
            raise ValueError(f"{name} {self.experiment!r} ({self.profile}): {error}") from None

    # ------------------------------------------------------------------ deriving profiles
    def with_changes(self, **values: Any) -> "ExperimentConfig":
        """A copy with some settings changed (validated). ``level={...}`` changes those :class:`Level` fields in
        every level; ``n_projections`` inside it sets P of each level's projections."""
        level_values = dict(values.pop("level", {}))
        if level_values:
            n_projections = level_values.pop("n_projections", None)
            levels = []
            for level in values.get("levels", self.levels):
                level = replace(level, **level_values)
                if n_projections is not None:
                    level = replace(level, projection=with_n_projections(level.projection, n_projections))
                levels.append(level)
            values["levels"] = tuple(levels)
        return replace(self, **values)

    def reduced(self, profile: str, changes: Changes) -> "ExperimentConfig":
        """The ``profile`` settings: these (the paper's) with ``changes`` applied and recorded."""
        return self.with_changes(profile=profile, changes=changes, **changes.values)

    # ------------------------------------------------------------------ levels and schedule
    def level_index(self, level: int) -> int:
        if not -len(self.levels) <= level < len(self.levels):
            raise ValueError(f"level must be in [-{len(self.levels)}, {len(self.levels)}), got {level}")
        return level % len(self.levels)

    def level_shape(self, level: int = -1) -> tuple[int, int, int]:
        """(C, s, s) of the particles at a level."""
        size = self.levels[self.level_index(level)].size
        return (self.x_shape[0], size, size)

    def schedules(self) -> tuple[Schedule, ...]:
        """The schedule of every level [method §3]: T_1 = 2^e, T_{l+1} = min(T_l + min(2^{e+l−1}, max_increment),
        max_steps), for ``n_networks`` networks or until the level's ``total_steps``; momentum m_l = the level's
        momentum, or (``momentum_increment`` > 0, pyramids [code]) growing by the increment per network, carried
        from level to level up to ``momentum_max``, and 0 on patch levels."""
        out, carried = [], self.levels[0].momentum
        for k, level in enumerate(self.levels):
            growing = self.momentum_increment > 0
            start = carried if growing and k else level.momentum
            rule = Schedule.growing(
                self.n_networks if level.total_steps is None else None, total_steps=level.total_steps,
                first_steps=2**level.first_exponent, max_increment=self.max_increment, max_steps=self.max_steps,
                momentum=start, momentum_increment=self.momentum_increment,
                momentum_max=self.momentum_max if growing else 1.0)
            if growing and isinstance(level.projection, Patches):
                rule = Schedule(rule.steps, (0.0,) * rule.n_networks)
            carried = min(self.momentum_max, start + rule.n_networks * self.momentum_increment)
            out.append(rule)
        return tuple(out)

    @property
    def total_networks(self) -> int:
        return sum(s.n_networks for s in self.schedules())

    # ------------------------------------------------------------------ what the config builds
    def flow_config(self, level: int = -1, **changes: Any) -> FlowConfig:
        """The :class:`cmmd.model.FlowConfig` of a level; ``changes`` replace its fields (``n_projections``: P)."""
        index = self.level_index(level)
        lv = self.levels[index]
        n_projections = changes.pop("n_projections", None)
        known = {f.name for f in fields(FlowConfig)}
        if set(changes) - known:
            raise ValueError(f"{sorted(set(changes) - known)} are not FlowConfig fields; valid ones: "
                             f"n_projections, {', '.join(sorted(known))}")
        config = FlowConfig(
            schedule=self.schedules()[index], projection=lv.projection, step_size=lv.step_size,
            train_steps=self.train_steps, batch_size=self.batch_size, lr=self.lr, lr_schedule="constant",
            grad_clip=self.grad_clip, sample_batch=self.sample_batch)
        config = replace(config, **changes)
        if n_projections is not None:
            config = replace(config, projection=with_n_projections(config.projection, n_projections))
        return config

    def condition_encoder(self, level: int = -1) -> nn.Module:
        """Renders a condition (B, *y_shape) as (B, cond_channels, s, s) at a level (the task's encoder)."""
        return self.task.encoder(self.level_shape(level)[1], self.x_shape)

    @property
    def cond_channels(self) -> int:
        return self.task.cond_channels(self.x_shape, self.y_shape)

    def unet_kwargs(self) -> dict:
        """Size options of :class:`cmmd.nets.UNet` (besides the channels and the condition encoder)."""
        return dict(base_width=self.net.base_width, channel_mult=self.net.channel_mult, blocks=self.net.blocks,
                    norm_groups=self.net.norm_groups)

    def network(self, level: int = -1) -> UNet:
        """A fresh UNet Φ for a level (initialised from the global RNG: wrap it in ``torch.random.fork_rng``)."""
        return UNet(self.x_shape[0], self.cond_channels, condition_encoder=self.condition_encoder(level),
                    **self.unet_kwargs())

    def operator(self, size: int | tuple[int, int] | None = None):
        """The task's operator A for this experiment's images (super-resolution: for images of side ``size``)."""
        if size is not None:
            return self.task.operator(self.x_shape, size)
        return self.task.operator(self.x_shape)

    def observe(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A x + noise (:meth:`cmmd.experiments.tasks.Task.observe`)."""
        return self.task.observe(x, self.x_shape, generator=generator)

    def training_pairs(self, x: torch.Tensor, *, generator: torch.Generator | None = None):
        """(x, condition) pairs for the flow (:meth:`cmmd.experiments.tasks.Task.training_pairs`)."""
        return self.task.training_pairs(x, self.x_shape, generator=generator)

    def build_flow(self, *, init_seed: int, device: str | torch.device | None = None,
                   **flow_changes: Any) -> ConditionalMMDFlow | PyramidFlow:
        """The untrained learned flow of this experiment, ready for ``fit(x, y)``.

        One :class:`~cmmd.model.ConditionalMMDFlow` per level (its :meth:`flow_config` and :meth:`network`),
        wrapped in a :class:`~cmmd.pyramid.PyramidFlow` when there are several levels. Each flow builds its
        gradient from its config, so every change takes effect and the checkpoint records what ran.

        Args:
            init_seed: the UNets are initialised after ``torch.manual_seed(init_seed)``, inside
                ``torch.random.fork_rng``, so the global random state does not move.
            device: where the networks live (the training data must be there too).
            flow_changes: fields of :class:`~cmmd.model.FlowConfig` to replace in every level, e.g.
                ``lr_schedule="cosine"``, ``projection=Sliced(50)``, or ``n_projections=P`` (P of each level's
                projections).
        """
        configs = [self.flow_config(k, **flow_changes) for k in range(len(self.levels))]  # validated first
        flows = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            for k, config in enumerate(configs):
                flows.append(ConditionalMMDFlow(self.level_shape(k), self.y_shape, net=self.network(k).to(device),
                                                config=config))
        return flows[0] if len(flows) == 1 else PyramidFlow(flows, upsample_noise=self.upsample_noise)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its ``paper`` settings and the :class:`Changes` of each reduced profile."""

    name: str
    paper: Callable[[], ExperimentConfig]
    cpu: Changes
    smoke: Changes

    def config(self, profile: str) -> ExperimentConfig:
        """The settings in ``profile``: the paper's, or the paper's with the profile's changes."""
        paper = self.paper()
        if check_profile(profile) == "paper":
            return paper
        return paper.reduced(profile, getattr(self, profile))
