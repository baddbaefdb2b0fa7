r"""A learned conditional MMD flow over a coarse-to-fine pyramid of resolutions [method §4].

The paper's CIFAR-10 and CelebA flows run at the resolutions 1/8 → 1/4 → 1/2 → 1 of the image, one
:class:`~cmmd.model.ConditionalMMDFlow` (its own networks, projections and schedule) per level:

- **training**: level k learns the flow toward the training images average-pooled to its size
  (:func:`~cmmd.projections.downsample_images`); level 0 starts from U[0, 1]^d, level k > 0 from the
  training particles of level k − 1 after its last network, upsampled by nearest neighbour and perturbed
  by ``upsample_noise``·N(0, 1) per pixel (:func:`~cmmd.projections.upsample_particles`);
- **sampling** for an observation y: z ~ U[0, 1]^d at the coarsest size, then per level
  x ← x − Φ_l(x, y) for its networks, and the same upsampling-plus-noise between levels.

The observation y is the same at every level; each level's networks render it at their own size
(their condition encoder, :meth:`cmmd.experiments.ExperimentConfig.network`).
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from cmmd._checks import check_floating, check_positive_int
from cmmd.checkpoint import FORMAT_VERSION, CheckpointError, atomic_save, check_writable_dir, read_state, require_kind
from cmmd.model import CHECKPOINT_NAME, ConditionalMMDFlow, FitHistory
from cmmd.projections import downsample_images, upsample_particles

LEVEL_DIR = "level-{}"


class PyramidFlow:
    """Coarse-to-fine conditional MMD flow: one :class:`ConditionalMMDFlow` per resolution level.

    Args:
        levels: the flows of the levels, coarse to fine; level k has x_shape (C, s_k, s_k) with s_k dividing
            s_{k+1}, and all share the y_shape of the observations.
        upsample_noise: σ of the Gaussian noise added per pixel when particles move one level up (paper: 0.07).
    """

    def __init__(self, levels: Sequence[ConditionalMMDFlow], *, upsample_noise: float = 0.07) -> None:
        self.levels = list(levels)
        _check_levels(self.levels)
        if not (isinstance(upsample_noise, (int, float)) and upsample_noise >= 0):
            raise ValueError(f"upsample_noise must be a number >= 0, got {upsample_noise!r}")
        self.upsample_noise = float(upsample_noise)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return self.levels[-1].x_shape

    @property
    def y_shape(self) -> tuple[int, ...]:
        return self.levels[-1].y_shape

    @property
    def networks(self) -> list[nn.Module]:
        """All networks, coarse level first."""
        return [net for flow in self.levels for net in flow.networks]

    @property
    def history(self) -> FitHistory:
        """The fit histories of the levels, concatenated (one entry per network, coarse level first)."""
        joined = FitHistory()
        for flow in self.levels:
            for f in fields(FitHistory):
                getattr(joined, f.name).extend(getattr(flow.history, f.name))
        return joined

    def level_of_network(self) -> list[int]:
        """The level index of each network of :attr:`networks`."""
        return [k for k, flow in enumerate(self.levels) for _ in flow.networks]

    def _factor(self, k: int) -> int:
        """Upsampling factor from level k − 1 to level k."""
        return self.levels[k].x_shape[-1] // self.levels[k - 1].x_shape[-1]

    def _up(self, x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
        return upsample_particles(x, factor=self._factor(k), noise=self.upsample_noise, generator=generator)

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
    ) -> "PyramidFlow":
        """Learn every level from training pairs x (N, C, H, W) at full resolution and y (N, *y_shape).

        Args:
            x, y: the training sample; level k trains on x average-pooled to its size.
            generator: source of all randomness (start particles, directions, minibatches, upsampling noise).
            checkpoint_dir: each level writes its checkpoint after every network to ``level-k/`` there.
            resume: continue an interrupted run from ``checkpoint_dir``: finished levels are read back, the
                interrupted one resumes, later ones start; the result equals an uninterrupted run (CPU).
            progress: show a tqdm bar per level.

        Returns:
            self, each level fitted.
        """
        check_floating("x", x)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(f"x must have shape (N, *{self.x_shape}) at full resolution, got {tuple(x.shape)}")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir, the folder of the checkpoints to continue")
        if checkpoint_dir is not None:
            check_writable_dir("checkpoint_dir", checkpoint_dir)
        particles = None
        for k, flow in enumerate(self.levels):
            targets = downsample_images(x, self.x_shape[-1] // flow.x_shape[-1])
            level_dir = Path(checkpoint_dir) / LEVEL_DIR.format(k) if checkpoint_dir is not None else None
            resume_level = resume and (k == 0 or (level_dir / CHECKPOINT_NAME).exists())
            # A resumed level takes its particles and generator state from its checkpoint.
            initial = None if k == 0 or resume_level else self._up(particles, k, generator)
            flow.fit(targets, y, generator=generator, checkpoint_dir=level_dir, resume=resume_level,
                     progress=progress, initial=initial)
            particles = flow.particles
        return self

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
        """Posterior samples for each observation (module docstring).

        Args:
            y: observations (B, *y_shape).
            n_samples: samples per observation.
            generator: source of the start noise and of the noise between levels.
            batch_size: rows pushed through a network at once; default each level's ``config.sample_batch``.

        Returns:
            Tensor (B, n_samples, *x_shape).
        """
        if not all(flow.networks for flow in self.levels):
            raise RuntimeError("sample() needs a trained pyramid: call fit(x, y) or PyramidFlow.load(path) first")
        if batch_size is not None:
            check_positive_int("batch_size", batch_size)
        x, y_rep = self.levels[0].start(y, n_samples, generator=generator)
        for k, flow in enumerate(self.levels):
            if k:
                x = self._up(x, k, generator)
            x = flow.transport(x, y_rep, batch_size=batch_size)
        return x.view(y.shape[0], n_samples, *self.x_shape)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to sample: the upsampling noise and each level's :meth:`ConditionalMMDFlow.state_dict`."""
        return {"format": FORMAT_VERSION, "kind": "pyramid", "upsample_noise": self.upsample_noise,
                "levels": [flow.state_dict() for flow in self.levels]}

    def save(self, path: str | os.PathLike) -> None:
        """Write the trained pyramid to one file, atomically."""
        if not all(flow.networks for flow in self.levels):
            raise RuntimeError("nothing to save: call fit(x, y) first")
        atomic_save(self.state_dict(), Path(path))

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, nets: Sequence[nn.Module | None] | None = None,
        map_location: str | torch.device = "cpu",
    ) -> "PyramidFlow":
        """Read a pyramid written by :meth:`save`; ``nets`` gives an untrained network of each level's architecture
        (needed unless the levels use the default MLP).

        The file is read without unpickling any object (``weights_only=True``) and its checksum is checked;
        :class:`cmmd.checkpoint.CheckpointError` names the file when it is corrupt or of another kind.
        """
        state = read_state(path, map_location, what="a saved PyramidFlow")
        require_kind(state, path, ("pyramid",))
        if not isinstance(state.get("levels"), list) or not isinstance(state.get("upsample_noise"), float):
            raise CheckpointError(f"{path} is a damaged PyramidFlow file (no list of levels or upsample_noise)")
        nets = list(nets) if nets is not None else [None] * len(state["levels"])
        if len(nets) != len(state["levels"]):
            raise ValueError(f"{path} holds {len(state['levels'])} levels but {len(nets)} networks were given; "
                             f"pass one network (or None) per level")
        try:
            levels = [ConditionalMMDFlow.from_state_dict(s, net=net, map_location=map_location)
                      for s, net in zip(state["levels"], nets)]
            return cls(levels, upsample_noise=state["upsample_noise"])
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from error


def _check_levels(levels: list[ConditionalMMDFlow]) -> None:
    if not levels:
        raise ValueError("a pyramid needs at least one level")
    for k, flow in enumerate(levels):
        if len(flow.x_shape) != 3 or flow.x_shape[1] != flow.x_shape[2]:
            raise ValueError(f"level {k}: x_shape must be (C, s, s) for square images, got {flow.x_shape}")
        if flow.y_shape != levels[0].y_shape:
            raise ValueError(f"level {k}: every level must share y_shape {levels[0].y_shape}, got {flow.y_shape}")
        if k and (flow.x_shape[0] != levels[0].x_shape[0] or flow.x_shape[1] % levels[k - 1].x_shape[1]
                  or flow.x_shape[1] <= levels[k - 1].x_shape[1]):
            raise ValueError(f"level {k}: size {flow.x_shape} must be a larger multiple of level {k - 1}'s "
                             f"{levels[k - 1].x_shape} with the same channels")
