"""One interface for the learned posterior samplers: :class:`~cmmd.model.ConditionalMMDFlow` (one resolution) and
:class:`~cmmd.pyramid.PyramidFlow` (coarse to fine) both are :class:`ConditionalSampler` s, so a chapter, the
chapter kit or a user's script fits, samples, saves and loads either without asking which it holds.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from cmmd.checkpoint import read_state, require_kind
from cmmd.model import ConditionalMMDFlow, FitHistory
from cmmd.pyramid import PyramidFlow


@runtime_checkable
class ConditionalSampler(Protocol):
    """What a learned conditional sampler offers: shapes, networks and history, ``fit``, ``sample`` and persistence.

    ``sample(y, n)`` returns (B, n, *x_shape) posterior samples for observations y (B, *y_shape); ``fit(x, y)``
    learns from training pairs; ``save(path)`` writes one file that :func:`load_sampler` reads back.
    """

    @property
    def x_shape(self) -> tuple[int, ...]: ...

    @property
    def y_shape(self) -> tuple[int, ...]: ...

    @property
    def networks(self) -> list[nn.Module]: ...

    @property
    def history(self) -> FitHistory: ...

    def fit(self, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None,
            checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
            progress: bool = True) -> Any: ...

    def sample(self, y: torch.Tensor, n_samples: int, *, generator: torch.Generator | None = None,
               batch_size: int | None = None) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def save(self, path: str | os.PathLike) -> None: ...


def load_sampler(path: str | os.PathLike, *, nets: Sequence[nn.Module | None] | None = None,
                 map_location: str | torch.device = "cpu") -> ConditionalMMDFlow | PyramidFlow:
    """Read a sampler written by ``save`` of either kind (a flow, a training checkpoint or a pyramid).

    Args:
        path: the file.
        nets: an untrained network of the architecture of each level (one for a single flow), e.g.
            ``[exp.network(k) for k in range(len(exp.levels))]``; ``None`` for the default MLP.
        map_location: where the weights are loaded.
    """
    state = read_state(path, map_location, what="a saved ConditionalMMDFlow or PyramidFlow")
    require_kind(state, path, ("flow", "checkpoint", "pyramid"))
    if state["kind"] == "pyramid":
        return PyramidFlow.load(path, nets=nets, map_location=map_location)
    if nets is not None and len(nets) != 1:
        raise ValueError(f"{path} holds one flow but {len(nets)} networks were given; pass one")
    return ConditionalMMDFlow.load(path, net=None if nets is None else nets[0], map_location=map_location)
