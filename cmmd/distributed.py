r"""Training a learned flow on K processes with ``torch.distributed`` (NCCL on CUDA, gloo on the CPU).

Every rank holds all particles and all training pairs and draws from the same seed, so every generator
advances identically on all ranks; the work is split, never the random stream.

**The flow step** (:class:`ShardedSliced`, :class:`ShardedPatches`). All ranks draw the same P directions
(and, for patches, the same window positions) exactly as the single-process estimator does; rank r takes the
contiguous share ``[rP/K, (r+1)P/K)`` of the directions, projects, sorts and back-projects only those, and one
``all_reduce`` (sum) of the (N, D) partial gradient gives every rank

.. math::

    \nabla_{x_i} \mathrm{MMD}^2 \approx \frac{c}{P} \sum_{r=1}^{K} \sum_{p \in S_r}
        \partial_i F_1(\langle \xi_p, x\rangle; \langle \xi_p, y\rangle)\, \xi_p ,

the single-process sum :func:`cmmd.sliced.sliced_mmd2_grad` in another order: equal up to float summation
(the message is N·D floats per step). The exact gradient is not split: every rank computes all of it.

**The networks** (:func:`train_network_sharded`). Each Adam step draws the same minibatch of B pair indices on
every rank (as :func:`cmmd.model.train_network` does), rank r trains on its share of B/K of them with loss
(K/B)·Σ_i ‖Φ(x_i, y_i) − t_i‖², and ``DistributedDataParallel`` averages the gradients: the mean squared error
of the whole minibatch, so every rank applies the same Adam step and all ranks end with identical weights.
Applying a network to the N particles is split into K row shards and all-gathered.

**Checkpoints**: rank 0 writes them (atomically, :func:`cmmd.checkpoint.atomic_save`), then all ranks wait at
a barrier; ``resume=True`` restarts all ranks from the last finished network. :class:`TrainingFlow` carries
all this as a subclass of :class:`cmmd.model.ConditionalMMDFlow`; with one process it changes nothing in the
numbers (it only counts networks for :class:`StopAfter`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cmmd._checks import check_pair
from cmmd.flow import GradientFn
from cmmd.flowspec import Sliced
from cmmd.model import ConditionalMMDFlow, FlowConfig, lr_scheduler
from cmmd.projections import PatchProjections, add_window, upsample_particles
from cmmd.pyramid import PyramidFlow
from cmmd.sliced import DEFAULT_BLOCK, block_rows, mmd2_grad_1d_joint, random_directions, sliced_factor


# ---------------------------------------------------------------------- the process group
@dataclass(frozen=True)
class Cluster:
    """Where this process stands: its ``rank`` of ``world_size`` processes and its ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and shows progress."""
        return self.rank == 0

    def share(self, total: int) -> tuple[int, int]:
        """This rank's contiguous share [lo, hi) of ``total`` items (:func:`share`)."""
        return share(total, self.rank, self.world_size)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all ranks, in place (nothing to do with one process); returns it."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def gather_rows(self, part: torch.Tensor, total: int) -> torch.Tensor:
        """All-gather the row shards of a (total, ...) tensor, rank r holding rows :func:`share` (total, r, K).

        The shards are padded to ⌈total/K⌉ rows (NCCL and gloo gather equal sizes) and trimmed after.
        """
        if self.world_size == 1:
            return part
        rows = -(-total // self.world_size)
        padded = part.new_zeros((rows, *part.shape[1:]))
        padded[: part.shape[0]] = part
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(pieces, padded.contiguous())
        sizes = [hi - lo for lo, hi in (share(total, r, self.world_size) for r in range(self.world_size))]
        return torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])


def share(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of rank ``rank``: lo = ⌊total·rank/K⌋, hi = ⌊total·(rank+1)/K⌋ (sizes differ by at most 1)."""
    return total * rank // world_size, total * (rank + 1) // world_size


def backend_for(device: torch.device) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def launched_world_size() -> int:
    """K from the launcher's environment (``WORLD_SIZE``, set by ``torchrun``); 1 without a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def start_cluster(device: torch.device) -> Cluster:
    """Join the process group that ``torchrun`` describes in the environment, or a cluster of one.

    With K > 1 processes and a CUDA ``device``, rank r uses ``cuda:LOCAL_RANK`` (one GPU per process).
    """
    world = launched_world_size()
    if world == 1:
        return Cluster(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device))
    return Cluster(dist.get_rank(), dist.get_world_size(), device)


def stop_cluster(cluster: Cluster, *, wait: bool = True) -> None:
    """Leave the process group when there is one, after a last barrier (``wait``; not after an error, when
    the other ranks may never arrive)."""
    if cluster.world_size > 1 and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


# ---------------------------------------------------------------------- the flow step
def owned_parts(blocks: Iterable[torch.Tensor], lo: int, hi: int) -> Iterator[torch.Tensor]:
    """The rows [lo, hi) of the concatenation of ``blocks`` (each (P_b, k), in order), block by block.

    Every block is still produced, so the random stream that draws them advances as in one process.
    """
    start = 0
    for block in blocks:
        a, b = max(lo, start), min(hi, start + block.shape[0])
        if a < b:
            yield block[a - start : b - start]
        start += block.shape[0]


class ShardedSliced:
    """The sliced gradient of :func:`cmmd.sliced.sliced_mmd2_grad`, this rank's share of the directions,
    summed over the ranks (module docstring); a :data:`cmmd.flow.GradientFn` returning (N, D)."""

    def __init__(self, n_projections: int, cluster: Cluster, *, max_block: int = DEFAULT_BLOCK) -> None:
        self.n_projections, self.cluster, self.max_block = n_projections, cluster, max_block

    def directions(self, x: torch.Tensor, length: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
        """All P directions, in the blocks and with the draws of :func:`cmmd.sliced.sliced_mmd2_grad`."""
        rows, at_once = block_rows(self.n_projections, x.shape[1], length, self.max_block)
        options = dict(generator=generator, dtype=x.dtype, device=x.device)
        if at_once:
            yield random_directions(self.n_projections, x.shape[1], **options)
            return
        for start in range(0, self.n_projections, rows):
            yield random_directions(min(rows, self.n_projections - start), x.shape[1], **options)

    def partial(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Σ_{p in this rank's share} ∂F_1,p ξ_p, (N, D), unscaled and not yet summed over the ranks."""
        check_pair(x, y)
        n, points = x.shape[0], torch.cat([x, y])
        rows, _ = block_rows(self.n_projections, x.shape[1], points.shape[0], self.max_block)
        lo, hi = self.cluster.share(self.n_projections)
        grad = torch.zeros_like(x)
        for part in owned_parts(self.directions(x, points.shape[0], generator), lo, hi):
            for xi in part.split(rows):
                grad.addmm_(mmd2_grad_1d_joint(xi @ points.T, n).T, xi)
        return grad

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        grad = self.cluster.all_reduce(self.partial(x, y, generator))
        return grad * (sliced_factor(x.shape[1]) / self.n_projections)


class ShardedPatches:
    """:class:`cmmd.projections.PatchProjections` with this rank's share of the P directions of every scale,
    summed over the ranks (module docstring). Window positions and directions are drawn as ``base`` draws
    them; a :data:`cmmd.flow.GradientFn` returning (N, d + n) with zero y columns."""

    def __init__(self, base: PatchProjections, cluster: Cluster) -> None:
        self.base, self.cluster = base, cluster

    def partial(self, particles: torch.Tensor, targets: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        """λ_s c/P Σ_{p in this rank's share} ∂F_1,p ξ_p^x per scale, back-projected into its window; (N, D)."""
        base = self.base
        check_pair(particles, targets, "particles", "targets")
        if particles.shape[1] != base.d + base.n:
            raise ValueError(f"particles must be joint vectors of d + n = {base.d + base.n} columns, "
                             f"got {tuple(particles.shape)}")
        n = particles.shape[0]
        x_img = particles[:, : base.d].view(n, *base.x_shape)
        t_img = targets[:, : base.d].view(targets.shape[0], *base.x_shape)
        grad = torch.zeros_like(particles)
        grad_img = grad[:, : base.d].view(n, *base.x_shape)
        constant = base.constant() / base.n_projections
        for scale in base.scales:
            top, left = base._position(particles, generator)  # the same draws as PatchProjections.__call__
            features = torch.cat([base.window_features(particles, x_img, scale, top, left),
                                  base.window_features(targets, t_img, scale, top, left)])
            small = self._scale_share(features, n, scale, generator, particles)
            add_window(grad_img, upsample_particles(small.mul_(constant * scale.weight), factor=scale.factor,
                                                    noise=0.0), top, left)
        return grad

    def _scale_share(self, features: torch.Tensor, n: int, scale, generator, like: torch.Tensor) -> torch.Tensor:
        """Σ_{p in share} ∂F_1,p · a_p/‖ξ_p‖ of one scale, (N, C, p, p); all P directions are drawn."""
        base = self.base
        rows, at_once = block_rows(base.n_projections, base.local_dim, features.shape[0], base.max_block)
        if at_once:
            blocks: Iterable[torch.Tensor] = [base.directions(scale, generator, like)]
        else:
            blocks = (base.directions(scale, generator, like, min(rows, base.n_projections - start))
                      for start in range(0, base.n_projections, rows))
        kx = base.x_shape[0] * base.patch_size**2
        acc = like.new_zeros(n, kx)
        lo, hi = self.cluster.share(base.n_projections)
        for part in owned_parts(blocks, lo, hi):
            for block in part.split(rows):
                acc.addmm_(mmd2_grad_1d_joint(block @ features.T, n).T, block[:, :kx])
        return acc.view(n, base.x_shape[0], base.patch_size, base.patch_size)

    def __call__(self, particles: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        return self.cluster.all_reduce(self.partial(particles, targets, generator))


def sharded_gradient(gradient: GradientFn, config: FlowConfig, cluster: Cluster) -> GradientFn:
    """The flow gradient ``gradient`` (built from ``config.projection``) split over the ranks of ``cluster``.

    One process, or the exact gradient: ``gradient`` itself (every rank computes all of it).
    """
    if cluster.world_size == 1:
        return gradient
    if isinstance(gradient, PatchProjections):
        return ShardedPatches(gradient, cluster)
    if isinstance(config.projection, Sliced):
        return ShardedSliced(config.projection.n_projections, cluster)
    return gradient


# ---------------------------------------------------------------------- the networks
def train_network_sharded(net: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                          config: FlowConfig, generator: torch.Generator | None, cluster: Cluster) -> float:
    """:func:`cmmd.model.train_network` with each minibatch split over the ranks (module docstring).

    Each step draws the B = min(batch_size, N) indices of the whole minibatch from ``generator`` (all ranks
    alike); rank r's loss is (K/B) Σ_{i in its share} ‖Φ(x_i, y_i) − t_i‖², whose DDP average over the K
    ranks is the minibatch mean of one process. Returns the mean of the last 10% of the minibatch losses.
    """
    batch = min(config.batch_size, x.shape[0])
    if batch < cluster.world_size:
        raise ValueError(f"a minibatch of {batch} pairs cannot be split over {cluster.world_size} processes; "
                         f"use at most {batch} processes or a larger batch_size")
    lo, hi = cluster.share(batch)
    ddp = DistributedDataParallel(net, device_ids=[cluster.device] if cluster.device.type == "cuda" else None)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    scheduler = lr_scheduler(optimizer, config.lr_schedule, config.train_steps)
    losses = torch.zeros(config.train_steps, dtype=x.dtype, device=x.device)
    net.train()
    for step in range(config.train_steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=generator, device=x.device)[lo:hi]
        loss = (ddp(x[idx], y[idx]) - target[idx]).square().flatten(1).sum(1).sum() * (cluster.world_size / batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        losses[step] = loss.detach()
    net.eval()
    losses = cluster.all_reduce(losses) / cluster.world_size
    return float(losses[-max(1, config.train_steps // 10) :].double().mean())


# ---------------------------------------------------------------------- the learned flow
class TrainingStopped(Exception):
    """Raised by :class:`StopAfter` once its budget of networks is trained and checkpointed."""


class StopAfter:
    """Stop a fit (:class:`TrainingStopped`) after ``networks`` more networks, each checkpointed first
    (a job with a wall-time limit; ``resume`` continues it). ``None``: never stop."""

    def __init__(self, networks: int | None) -> None:
        self.left = networks

    def network_done(self) -> None:
        if self.left is None:
            return
        self.left -= 1
        if self.left <= 0:
            raise TrainingStopped("stopped after the requested number of networks; resume to continue")


class TrainingFlow(ConditionalMMDFlow):
    """A :class:`ConditionalMMDFlow` that trains on the ranks of a :class:`Cluster` (module docstring).

    Build it with :meth:`wrap` from an untrained flow. With one process the gradient, the network training and
    the application of the networks are the parent's, unchanged; checkpoints are written by rank 0 only.
    """

    cluster: Cluster
    stop: StopAfter
    _fitting: bool = False

    @classmethod
    def wrap(cls, flow: ConditionalMMDFlow, cluster: Cluster, stop: StopAfter | None = None) -> "TrainingFlow":
        """A copy of ``flow`` (sharing its template network and config) that trains on ``cluster``."""
        new = cls.__new__(cls)
        new.__dict__.update(vars(flow))
        new.cluster, new.stop = cluster, stop or StopAfter(None)
        new.gradient = sharded_gradient(flow.gradient, flow.config, cluster)
        return new

    def fit(self, x: torch.Tensor, y: torch.Tensor, **options) -> "TrainingFlow":
        """:meth:`ConditionalMMDFlow.fit` on all ranks; every rank must call it with the same arguments."""
        if min(self.config.batch_size, x.shape[0]) < self.cluster.world_size:
            raise ValueError(f"{self.cluster.world_size} processes need minibatches of at least as many pairs, "
                             f"got batch_size {self.config.batch_size} and N = {x.shape[0]}")
        self._fitting = True
        try:
            return super().fit(x, y, **options)
        finally:
            self._fitting = False

    def _train_network(self, net, x, y, target, generator) -> float:
        if self.cluster.world_size == 1:
            return super()._train_network(net, x, y, target, generator)
        return train_network_sharded(net, x, y, target, self.config, generator, self.cluster)

    @torch.no_grad()
    def _apply(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> torch.Tensor:
        """x − net(x, y); during a fit on K ranks each computes its row shard and all ranks gather the rest."""
        if self.cluster.world_size == 1 or not self._fitting:
            return super()._apply(net, x, y, batch)
        lo, hi = self.cluster.share(x.shape[0])
        return self.cluster.gather_rows(super()._apply(net, x[lo:hi], y[lo:hi], batch), x.shape[0])

    def _write_checkpoint(self, path: Path, fingerprint: str, particles, generator) -> None:
        if self.cluster.is_main:
            super()._write_checkpoint(path, fingerprint, particles, generator)
        self.cluster.barrier()
        self.stop.network_done()


def wrap_model(model: ConditionalMMDFlow | PyramidFlow, cluster: Cluster,
               stop: StopAfter | None = None) -> TrainingFlow | PyramidFlow:
    """:meth:`TrainingFlow.wrap` of a flow, or of every level of a pyramid (one shared ``stop`` budget)."""
    stop = stop or StopAfter(None)
    if isinstance(model, PyramidFlow):
        return PyramidFlow([TrainingFlow.wrap(level, cluster, stop) for level in model.levels],
                           upsample_noise=model.upsample_noise)
    return TrainingFlow.wrap(model, cluster, stop)
