r"""The learned conditional MMD flow: a sequence of networks Φ_1..Φ_L [method §3].

Training (``fit``), for l = 1..L, with particles (x_i, q_i) started at x_i ~ U[0, 1]^d:

1. keep x_old; simulate T_l steps of the conditional MMD flow toward the training pairs (p_i, q_i),
   giving x_T (only x moves, :func:`cmmd.flow.conditional_mmd_flow`);
2. train Φ_l(x, q) ≈ x_old − x_T by mean squared error with Adam (Φ_l warm-started from Φ_{l−1});
3. replace the particles by x_old − Φ_l(x_old, q), so that network errors do not accumulate.

The flow steps T_l and momenta m_l come from ``config.schedule`` (:class:`cmmd.flowspec.Schedule`; the authors'
rule T_{l+1} = min(T_l + min(2^{4+l−1}, 1024), cap) is :meth:`~cmmd.flowspec.Schedule.growing`), the gradient from
``config.projection``. The momentum state starts at zero for every network, as in the authors' code.
Sampling for a new observation y: z ~ U[0, 1]^d, then x ← x − Φ_l(x, y) for l = 1..L.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from cmmd._checks import check_floating, check_shape, check_nonnegative_int, check_number, check_positive_int
from cmmd.checkpoint import (FORMAT_VERSION, CheckpointError, atomic_save, check_flow_state, check_writable_dir,
                             data_fingerprint, differences, read_state, require_kind, state_dtype)
from cmmd.flow import GradientFn, conditional_mmd_flow, recorded_mmd2
from cmmd.flowspec import Projection, Schedule, Sliced, check_projection, projection_from_dict, projection_to_dict
from cmmd.nets import MLP, prod

CHECKPOINT_NAME = "checkpoint.pt"
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class FlowConfig:
    """Settings of a learned conditional MMD flow: its schedule, its projections, and how each network is trained.

    The defaults are the ``cpu`` profile for vectors of unit scale (chapter 2): 12 networks of T = 25 flow steps
    (m = 0.8, P = 50), MLPs of 3 × 128 with 64 Fourier features, 2,000 Adam steps (batch 1,000, lr 2e-3, cosine
    decay). The paper's settings per experiment are in :mod:`cmmd.experiments`.

    Attributes:
        schedule: flow steps T_l and momentum m_l per network (:class:`cmmd.flowspec.Schedule`; the authors'
            growing rule is :meth:`~cmmd.flowspec.Schedule.growing`).
        projection: how the flow gradient is estimated: :class:`~cmmd.flowspec.Exact`,
            :class:`~cmmd.flowspec.Sliced` (P directions) or :class:`~cmmd.flowspec.Patches` (images).
        step_size: τ of the Euler step x ← x − τ N v.
        train_steps: Adam steps per network (paper: 4,000–5,000).
        batch_size: minibatch size for the network training (paper: 100).
        lr: Adam learning rate (paper: 5e-4).
        lr_schedule: ``"constant"`` (paper) or ``"cosine"`` (decays to 0 over ``train_steps``; fits the
            small displacements of the later networks more accurately for the same number of steps).
        grad_clip: clip the network gradient norm to this value (paper, CT: 1); ``None`` = no clipping.
        hidden, depth: size of the default MLP (vector data only).
        fourier_features, fourier_scale: random Fourier input features of the default MLP
            (:class:`cmmd.nets.MLP`); 0 features (default) is a plain MLP.
        sample_batch: default number of samples pushed through the networks at once.

    Every field is checked at construction (also by ``dataclasses.replace``); a bad value raises ``ValueError``
    naming the field.
    """

    schedule: Schedule = field(default_factory=lambda: Schedule.constant(12, steps=25, momentum=0.8))
    projection: Projection = field(default_factory=lambda: Sliced(50))
    step_size: float = 1.0
    train_steps: int = 2000
    batch_size: int = 1000
    lr: float = 2e-3
    lr_schedule: str = "cosine"
    grad_clip: float | None = None
    hidden: int = 128
    depth: int = 3
    fourier_features: int = 64
    fourier_scale: float = 1.5
    sample_batch: int = 4096

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"FlowConfig.schedule must be a cmmd.flowspec.Schedule, got {self.schedule!r:.80}")
        check_projection("FlowConfig.projection", self.projection)
        for name in ("train_steps", "batch_size", "hidden", "depth", "sample_batch"):
            check_positive_int(f"FlowConfig.{name}", getattr(self, name))
        check_nonnegative_int("FlowConfig.fourier_features", self.fourier_features)
        for name in ("step_size", "lr", "fourier_scale"):
            check_number(f"FlowConfig.{name}", getattr(self, name), low=0, low_open=True)
        if self.grad_clip is not None:
            check_number("FlowConfig.grad_clip (or None for no clipping)", self.grad_clip, low=0, low_open=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"FlowConfig.lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")

    @property
    def n_networks(self) -> int:
        """L, the number of networks (``len(schedule.steps)``)."""
        return self.schedule.n_networks

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (what a checkpoint records); :meth:`from_dict` inverts it."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["schedule"] = {"steps": list(self.schedule.steps), "momenta": list(self.schedule.momenta)}
        values["projection"] = projection_to_dict(self.projection)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FlowConfig":
        """The config recorded by :meth:`to_dict`; a bad record raises ``ValueError``."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown FlowConfig fields {sorted(unknown)}")
        values = dict(values)
        values["schedule"] = Schedule(**values["schedule"])
        values["projection"] = projection_from_dict(values["projection"])
        return cls(**values)


@dataclass
class FitHistory:
    """Per network: flow steps T_l, MMD² of the joint particles after the flow, final training loss."""

    flow_steps: list[int] = field(default_factory=list)
    mmd2_after_flow: list[float] = field(default_factory=list)
    mmd2_after_network: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)


class ConditionalMMDFlow:
    """Learned conditional MMD flow for data x of shape ``x_shape`` given observations of shape ``y_shape``.

    Args:
        x_shape: shape of one ground truth, e.g. (2,) or (1, 28, 28).
        y_shape: shape of one observation, e.g. (1,) or (10,).
        net: the first network Φ_1 (later ones are warm-started copies); ``None`` builds an :class:`MLP`.
        config: :class:`FlowConfig`; ``None`` uses the defaults (``cpu`` profile for vectors).
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        y_shape: tuple[int, ...],
        *,
        net: nn.Module | None = None,
        config: FlowConfig | None = None,
    ) -> None:
        self.x_shape, self.y_shape = check_shape("x_shape", x_shape), check_shape("y_shape", y_shape)
        self.config = config or FlowConfig()
        self._template = net
        if not isinstance(self.config, FlowConfig):
            raise ValueError(f"config must be a FlowConfig, got {config!r:.80}")
        #: the flow gradient, built from ``config.projection`` (what the checkpoint records is what runs)
        self.gradient: GradientFn = self.config.projection.gradient(self.x_shape, self.y_shape)
        self.networks: list[nn.Module] = []
        self.history = FitHistory()
        self.particles: torch.Tensor | None = None

    # ------------------------------------------------------------------ networks
    def _first_network(self, generator: torch.Generator | None, like: torch.Tensor) -> nn.Module:
        """Φ_1: the given template, or a default MLP initialised from ``generator`` (global RNG untouched)."""
        if self._template is not None:
            return copy.deepcopy(self._template).to(like.device)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=like.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            cfg = self.config
            net = MLP(prod(self.x_shape), prod(self.y_shape), hidden=cfg.hidden, depth=cfg.depth,
                      fourier_features=cfg.fourier_features, fourier_scale=cfg.fourier_scale)
        return net.to(device=like.device, dtype=like.dtype)

    def _train_network(self, net: nn.Module, x, y, target, generator) -> float:
        """:func:`train_network` with this flow's config (one place that tests can interrupt)."""
        return train_network(net, x, y, target, self.config, generator)

    @torch.no_grad()
    def _apply(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> torch.Tensor:
        """x − net(x, y) in batches of ``batch`` rows."""
        out = torch.empty_like(x)
        for start in range(0, x.shape[0], batch):
            rows = slice(start, start + batch)
            out[rows] = x[rows] - net(x[rows], y[rows])
        return out

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
        initial: torch.Tensor | None = None,
        after_network: Callable[["ConditionalMMDFlow"], None] | None = None,
    ) -> "ConditionalMMDFlow":
        """Learn the flow from training pairs x (N, *x_shape), y (N, *y_shape) (module docstring).

        Args:
            x, y: the training sample (p_i, q_i) of P_{X,Y}.
            generator: source of all randomness (initial particles, directions, minibatches, init).
            checkpoint_dir: write ``checkpoint.pt`` there, atomically, after every network.
            resume: continue from the checkpoint in ``checkpoint_dir``; the result equals an uninterrupted
                run with the same seed (CPU). Without it, an existing checkpoint is never overwritten.
            progress: show a tqdm bar (network l of L, MMD², training loss).
            initial: start particles (N, *x_shape) instead of U[0, 1]^d (a pyramid level starts from the
                level below, :mod:`cmmd.pyramid`); ignored when resuming (the checkpoint holds the particles).
            after_network: called with the flow after each network is trained, recorded and checkpointed
                (e.g. to time or to score the flow so far; it must not change the flow).

        Returns:
            self, with ``networks`` (L modules), ``history`` and ``particles`` (N, *x_shape), the training
            particles after the last network.

        Raises ``ValueError`` before any work for bad arguments or a ``checkpoint_dir`` that cannot hold files;
        resuming refuses (naming the file) a corrupt checkpoint, another configuration, or other pairs
        (:func:`cmmd.checkpoint.data_fingerprint`).
        """
        self._check_training_data(x, y)
        n = x.shape[0]
        cfg = self.config
        ckpt = None
        if checkpoint_dir is not None:
            ckpt = check_writable_dir("checkpoint_dir", checkpoint_dir) / CHECKPOINT_NAME
        x_flat, y_flat = x.reshape(n, -1), y.reshape(n, -1)
        fingerprint = data_fingerprint(x_flat, y_flat) if ckpt is not None else ""
        if resume:
            state = self._resume_state(ckpt, fingerprint, generator, x)
        else:
            if ckpt is not None and ckpt.exists():
                raise FileExistsError(
                    f"{ckpt} already holds a checkpoint; pass resume=True to continue it, "
                    f"or choose another checkpoint_dir (nothing was overwritten)"
                )
            self.networks, self.history = [], FitHistory()
            state = {"particles": self._initial_particles(x, initial, generator)}
        particles = state["particles"]
        schedule, momenta = cfg.schedule.steps, cfg.schedule.momenta
        bar = tqdm(range(len(self.networks), cfg.n_networks), disable=not progress, desc="networks",
                   initial=len(self.networks), total=cfg.n_networks)
        for level in bar:
            x_old = particles
            flowed = conditional_mmd_flow(
                x_old, y_flat, x_flat, y_flat, schedule[level], step_size=cfg.step_size, momentum=momenta[level],
                gradient=self.gradient, record_every=max(1, schedule[level]), generator=generator,
            )
            net = self._first_network(generator, x) if level == 0 else copy.deepcopy(self.networks[-1])
            displacement = (x_old - flowed.x).view(n, *self.x_shape)
            x_img, y_img = x_old.view(n, *self.x_shape), y.reshape(n, *self.y_shape)
            loss = self._train_network(net, x_img, y_img, displacement, generator)
            self.networks.append(net)
            particles = self._apply(net, x_img, y_img, cfg.sample_batch).reshape(n, -1)
            self._record(schedule[level], flowed.mmd2[-1], particles, y_flat, x_flat, loss)
            bar.set_postfix(mmd2=f"{self.history.mmd2_after_network[-1]:.2e}", loss=f"{loss:.2e}")
            if ckpt is not None:
                self._write_checkpoint(ckpt, fingerprint, particles, generator)
            if after_network is not None:
                after_network(self)
        self.particles = particles.view(n, *self.x_shape)
        return self

    def _initial_particles(self, x: torch.Tensor, initial: torch.Tensor | None, generator) -> torch.Tensor:
        """The start particles (N, d): ``initial`` flattened (copied), or U[0, 1]^d drawn from ``generator``."""
        n = x.shape[0]
        if initial is None:
            return torch.rand((n, prod(self.x_shape)), generator=generator, dtype=x.dtype, device=x.device)
        check_floating("initial", initial)
        if tuple(initial.shape) != tuple(x.shape):
            raise ValueError(f"initial particles must have the shape of x, {tuple(x.shape)}, got {tuple(initial.shape)}")
        return initial.to(dtype=x.dtype, device=x.device).reshape(n, -1).clone()

    def _record(self, steps, mmd2_flow, particles, y_flat, x_flat, loss) -> None:
        joint, target = torch.cat([particles, y_flat], 1), torch.cat([x_flat, y_flat], 1)
        self.history.flow_steps.append(steps)
        self.history.mmd2_after_flow.append(mmd2_flow)
        self.history.mmd2_after_network.append(recorded_mmd2(joint, target, len(self.networks)))
        self.history.train_loss.append(loss)

    def _check_training_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        check_floating("x", x)
        check_floating("y", y)
        if tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(f"x must have shape (N, *{self.x_shape}), got {tuple(x.shape)}")
        if tuple(y.shape[1:]) != self.y_shape:
            raise ValueError(f"y must have shape (N, *{self.y_shape}), got {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must hold the same number of pairs, got {x.shape[0]} and {y.shape[0]}")
        if x.dtype != y.dtype or x.device != y.device:
            raise ValueError(f"x ({x.dtype}, {x.device}) and y ({y.dtype}, {y.device}) must match")

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        y: torch.Tensor,
        n_samples: int,
        *,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Posterior samples for each observation: z ~ U[0, 1]^d, x ← x − Φ_l(x, y) for l = 1..L.

        Args:
            y: observations (B, *y_shape).
            n_samples: samples per observation.
            generator: source of the initial noise; all noise is drawn at once, so the samples do not
                depend on ``batch_size``.
            batch_size: rows pushed through the networks at once (memory bound); default
                ``config.sample_batch``.

        Returns:
            Tensor (B, n_samples, *x_shape).
        """
        batch = batch_size if batch_size is not None else self.config.sample_batch
        check_positive_int("batch_size", batch)
        z, y_rep = self.start(y, n_samples, generator=generator)
        return self.transport(z, y_rep, batch_size=batch).view(y.shape[0], n_samples, *self.x_shape)

    def start(
        self, y: torch.Tensor, n_samples: int, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Check a sampling request and draw its start: z (B·n_samples, *x_shape) ~ U[0, 1]^d and y with each
        row repeated n_samples times, both on the device and dtype of the networks."""
        if not self.networks:
            raise RuntimeError("sample() needs a trained flow: call fit(x, y) or ConditionalMMDFlow.load(path) first")
        check_floating("y", y)
        if tuple(y.shape[1:]) != self.y_shape:
            raise ValueError(
                f"y must have shape (B, *{self.y_shape}) like the training observations, got {tuple(y.shape)}"
            )
        check_positive_int("n_samples", n_samples)
        dtype, device = self._parameter_dtype_device(y)
        z = torch.rand((y.shape[0] * n_samples, *self.x_shape), generator=generator, dtype=dtype, device=device)
        return z, y.to(dtype).repeat_interleave(n_samples, dim=0)

    @torch.no_grad()
    def transport(self, z: torch.Tensor, y: torch.Tensor, *, batch_size: int | None = None) -> torch.Tensor:
        """Push initial particles through the networks: x_0 = z, x_l = x_{l−1} − Φ_l(x_{l−1}, y), l = 1..L.

        Args:
            z: initial particles (R, *x_shape), or any grid the networks accept (a fully convolutional
                UNet takes larger images, see :mod:`cmmd.convolutional`).
            y: one observation per row of z, (R, ...), on the device and dtype of the networks.
            batch_size: rows pushed through a network at once (memory bound); default ``config.sample_batch``.

        Returns:
            x_L, the shape of z. Rows are independent, so the result does not depend on ``batch_size``.

        ``batch_size`` must be an integer >= 1, z a finite float32/float64 tensor with as many rows as y.
        """
        batch = batch_size if batch_size is not None else self.config.sample_batch
        check_positive_int("batch_size", batch)
        check_floating("z", z)
        if not isinstance(y, torch.Tensor) or y.shape[:1] != z.shape[:1]:
            raise ValueError(f"y must be a tensor with one row per row of z ({z.shape[0]}), got {y!r:.80}")
        for net in self.networks:
            z = self._apply(net, z, y, batch)
        return z

    def _parameter_dtype_device(self, y: torch.Tensor) -> tuple[torch.dtype, torch.device]:
        param = next(self.networks[0].parameters(), None)
        return (param.dtype, param.device) if param is not None else (y.dtype, y.device)

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "kind": "flow",
            "x_shape": list(self.x_shape),
            "y_shape": list(self.y_shape),
            "config": self.config.to_dict(),
            "network_class": type(self.networks[0]).__name__ if self.networks else None,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to sample: shapes, config, the networks' weights and the fit history."""
        return {
            **self._meta(),
            "networks": [net.state_dict() for net in self.networks],
            "history": asdict(self.history),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the trained flow to ``path`` atomically, with a checksum (:func:`cmmd.checkpoint.atomic_save`)."""
        if not self.networks:
            raise RuntimeError("nothing to save: call fit(x, y) first")
        atomic_save(self.state_dict(), Path(path))

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, net: nn.Module | None = None, map_location: str | torch.device = "cpu"
    ) -> "ConditionalMMDFlow":
        """Read a flow written by :meth:`save` (or a training checkpoint). Pass ``net`` (an untrained network of
        the same architecture) when the flow was trained with a custom network.

        The file is read without unpickling any object (``weights_only=True``) and its checksum is checked;
        :class:`cmmd.checkpoint.CheckpointError` names the file when it is corrupt or of another kind.
        """
        state = read_state(path, map_location, what="a saved ConditionalMMDFlow")
        require_kind(state, path, ("flow", "checkpoint"))
        try:
            return cls.from_state_dict(state, net=net, map_location=map_location)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from error

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, net: nn.Module | None = None, map_location: str | torch.device = "cpu"
    ) -> "ConditionalMMDFlow":
        """The flow held by ``state`` (as :meth:`state_dict` returns it); ``net`` as in :meth:`load`."""
        check_flow_state(state, {f.name for f in fields(FlowConfig)})
        config = FlowConfig.from_dict(state["config"])
        model = cls(tuple(state["x_shape"]), tuple(state["y_shape"]), net=net, config=config)
        model._load_networks(state, map_location)
        return model

    def _load_networks(self, state: dict[str, Any], map_location) -> None:
        like = torch.empty(0, dtype=state_dtype(state), device=map_location)
        template = self._first_network(torch.Generator().manual_seed(0), like)
        if state["network_class"] != type(template).__name__:
            raise ValueError(
                f"the checkpoint holds {state['network_class']} networks but the template is "
                f"{type(template).__name__}; pass net= of the architecture it was trained with"
            )
        self.networks = []
        for index, weights in enumerate(state["networks"]):
            net = copy.deepcopy(template)
            try:
                net.load_state_dict(weights)
            except RuntimeError as error:
                raise ValueError(f"network {index} does not fit the template's architecture ({error}); "
                                 f"pass net= of the architecture the flow was trained with") from None
            net.eval()
            self.networks.append(net)
        self.history = FitHistory(**state["history"])

    def _write_checkpoint(self, path: Path, fingerprint: str, particles, generator) -> None:
        state = self.state_dict()
        state["kind"] = "checkpoint"
        state["training"] = {
            "fingerprint": fingerprint,
            "particles": particles,
            "generator": generator.get_state() if generator is not None else None,
        }
        atomic_save(state, path)

    def _resume_state(self, ckpt: Path | None, fingerprint, generator, like: torch.Tensor) -> dict[str, Any]:
        if ckpt is None:
            raise ValueError("resume=True needs checkpoint_dir, the folder of the checkpoint to continue")
        if not ckpt.exists():
            raise FileNotFoundError(f"no checkpoint at {ckpt} to resume; run fit without resume=True first")
        state = read_state(ckpt, like.device, what="a training checkpoint")
        require_kind(state, ckpt, ("checkpoint",))
        check_flow_state(state, {f.name for f in fields(FlowConfig)}, where=str(ckpt))
        mismatch = differences(self._meta() | {"network_class": state["network_class"]}, state)
        if state["training"].get("fingerprint") != fingerprint:
            mismatch.append("training data (x, y) differ from those the checkpoint was trained on "
                            "(other values, pairs or order)")
        if mismatch:
            raise ValueError(f"{ckpt} was written by another configuration: " + "; ".join(mismatch))
        self._load_networks(state, like.device)
        training = state["training"]
        if generator is not None and training["generator"] is not None:
            generator.set_state(training["generator"].cpu())  # a ByteTensor on the CPU whatever map_location
        return {"particles": training["particles"]}


def train_network(net: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, config: FlowConfig,
                  generator: torch.Generator | None) -> float:
    """Fit net(x, y) ≈ target by mean squared error with Adam, in place: ``config.train_steps`` steps on minibatches
    of ``config.batch_size`` rows drawn with replacement from ``generator``, loss mean_i ‖net(x_i, y_i) − t_i‖²,
    learning rate ``config.lr`` with ``config.lr_schedule``, optional gradient clipping. The loop of every network
    of a flow, and of the MMSE regressor (:mod:`cmmd.regression`). Returns the mean loss of the last 10% of steps.
    """
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    scheduler = lr_scheduler(optimizer, config.lr_schedule, config.train_steps)
    net.train()
    losses = []
    for _ in range(config.train_steps):
        idx = torch.randint(0, x.shape[0], (min(config.batch_size, x.shape[0]),), generator=generator, device=x.device)
        loss = (net(x[idx], y[idx]) - target[idx]).square().flatten(1).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    net.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)


def lr_scheduler(optimizer: torch.optim.Optimizer, kind: str, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of a network's ``steps`` Adam steps: ``constant``, or ``cosine`` to 0."""
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {kind!r}")

