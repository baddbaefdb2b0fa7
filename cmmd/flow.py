r"""MMD particle flows with the negative distance kernel, plain and conditional.

The method is explained in the book's page "Method and settings", book/method.md, §2.

Explicit Euler with momentum m and step size τ on F(x) = MMD²((1/N)Σδ_{x_i}, target):

.. math::

    v \leftarrow \nabla F(x) + m\, v, \qquad x \leftarrow x - \tau N v,

the factor N turning the gradient of F with respect to one particle into the Wasserstein velocity field
(ẋ_i = −N ∇_{x_i} F). In the conditional flow the particles are joint vectors (x_i, q_i) and the target
is the sample (p_i, q_i) of P_{X,Y}; the gradient is taken in the joint space R^{d+n} and only the x part
moves: every q_i stays bit-identical (the paper's Theorem: a Wasserstein gradient flow of the MMD under
the constraint that the y-marginal is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from cmmd._checks import check_pair, check_positive_int, check_points
from cmmd.energy import mmd2, mmd2_grad
from cmmd.sliced import sliced_mmd2, sliced_mmd2_grad

#: (particles (N, D), targets (M, D), generator) -> gradient of MMD² with respect to the particles (N, D).
GradientFn = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]

EXACT_RECORD_LIMIT = 1 << 22  # record the exact MMD² while N·(N+M) stays below this, else a sliced estimate
RECORD_PROJECTIONS = 200


def gradient_estimator(n_projections: int | None) -> GradientFn:
    """The exact gradient (``None``) or the sliced estimate with ``n_projections`` directions."""
    if n_projections is None:
        return lambda x, y, generator: mmd2_grad(x, y)
    check_positive_int("n_projections", n_projections)
    return lambda x, y, generator: sliced_mmd2_grad(x, y, n_projections, generator=generator)


def recorded_mmd2(x: torch.Tensor, y: torch.Tensor, step: int) -> float:
    """MMD² reported along a flow: exact for small clouds, else a sliced estimate seeded by ``step``.

    The recording has its own generator so that recording never changes the flow's random stream.
    """
    if x.shape[0] * (x.shape[0] + y.shape[0]) <= EXACT_RECORD_LIMIT:
        return float(mmd2(x, y))
    generator = torch.Generator(device=x.device).manual_seed(step)
    return float(sliced_mmd2(x, y, RECORD_PROJECTIONS, generator=generator))


@dataclass
class FlowResult:
    """Outcome of a flow: final moving part ``x`` (N, d), fixed part ``y`` (N, n; empty for a plain flow),
    the momentum state ``velocity`` (N, d) to continue from, the MMD² record and the snapshots of x."""

    x: torch.Tensor
    y: torch.Tensor
    velocity: torch.Tensor
    steps: list[int] = field(default_factory=list)
    mmd2: list[float] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)


def _check_flow_options(n_steps: int, step_size: float, momentum: float, record_every: int) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be an integer >= 0, got {n_steps!r}")
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    check_positive_int("record_every", record_every)


def _run(
    joint: torch.Tensor,
    d_moving: int,
    target: torch.Tensor,
    n_steps: int,
    *,
    step_size: float,
    momentum: float,
    gradient: GradientFn,
    velocity: torch.Tensor | None,
    record_every: int,
    snapshot_steps: Iterable[int],
    generator: torch.Generator | None,
    progress: bool,
) -> FlowResult:
    """Flow the first ``d_moving`` columns of ``joint`` (N, D) toward ``target`` (M, D); the rest never moves."""
    _check_flow_options(n_steps, step_size, momentum, record_every)
    n = joint.shape[0]
    v = torch.zeros_like(joint[:, :d_moving]) if velocity is None else velocity.clone()
    if v.shape != (n, d_moving):
        raise ValueError(f"velocity must have shape {(n, d_moving)}, got {tuple(v.shape)}")
    wanted = set(snapshot_steps)
    result = FlowResult(x=joint[:, :d_moving], y=joint[:, d_moving:], velocity=v)
    bar = tqdm(range(n_steps + 1), disable=not progress, desc="MMD flow", leave=False)
    for step in bar:
        if step in wanted:
            result.snapshots[step] = joint[:, :d_moving].clone()
        if step % record_every == 0 or step == n_steps:
            result.steps.append(step)
            result.mmd2.append(recorded_mmd2(joint, target, step))
            bar.set_postfix(mmd2=f"{result.mmd2[-1]:.3e}")
        if step == n_steps:
            break
        grad = gradient(joint, target, generator)[:, :d_moving]
        v = grad + momentum * v if momentum else grad
        joint[:, :d_moving] -= (step_size * n) * v
    result.x, result.y, result.velocity = joint[:, :d_moving], joint[:, d_moving:], v
    return result


def mmd_flow(
    x0: torch.Tensor,
    target: torch.Tensor,
    n_steps: int,
    *,
    step_size: float = 1.0,
    momentum: float = 0.0,
    n_projections: int | None = None,
    gradient: GradientFn | None = None,
    velocity: torch.Tensor | None = None,
    record_every: int = 1,
    snapshot_steps: Iterable[int] = (),
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> FlowResult:
    """MMD particle flow of x0 (N, d) toward the empirical measure of ``target`` (M, d).

    Args:
        x0: initial particles (N, d); not modified.
        target: target samples (M, d).
        n_steps: number of Euler steps.
        step_size: τ; the particles move by τ·N·v per step.
        momentum: m in [0, 1).
        n_projections: P for the sliced gradient; ``None`` uses the exact O(N(N+M)) gradient.
        gradient: a custom :data:`GradientFn` (overrides ``n_projections``).
        velocity: momentum state to continue from, (N, d).
        record_every: record MMD² every this many steps (and at the last step).
        snapshot_steps: steps at which to keep a copy of the particles.
        generator: source of the random directions.
        progress: show a tqdm bar with the live MMD².

    Returns:
        :class:`FlowResult` with ``x`` of shape (N, d).
    """
    check_pair(x0, target, "x0", "target")
    return _run(
        x0.clone(),
        x0.shape[1],
        target,
        n_steps,
        step_size=step_size,
        momentum=momentum,
        gradient=gradient or gradient_estimator(n_projections),
        velocity=velocity,
        record_every=record_every,
        snapshot_steps=snapshot_steps,
        generator=generator,
        progress=progress,
    )


def conditional_mmd_flow(
    x0: torch.Tensor,
    y: torch.Tensor,
    target_x: torch.Tensor,
    target_y: torch.Tensor,
    n_steps: int,
    *,
    step_size: float = 1.0,
    momentum: float = 0.0,
    n_projections: int | None = None,
    gradient: GradientFn | None = None,
    velocity: torch.Tensor | None = None,
    record_every: int = 1,
    snapshot_steps: Iterable[int] = (),
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> FlowResult:
    """Conditional MMD particle flow: joint particles (x_i, y_i) flow toward the joint sample (p_k, q_k).

    The MMD² and its gradient live in the joint space R^{d+n}; only x moves, y is never written.

    Args:
        x0: initial x parts (N, d), e.g. uniform noise on [0, 1]^d.
        y: fixed conditions (N, n); in the paper y_i = q_i, the observation of training pair i.
        target_x: ground truths p_k (M, d).
        target_y: observations q_k (M, n).
        n_steps, step_size, momentum, n_projections, gradient, velocity, record_every, snapshot_steps,
        generator, progress: as in :func:`mmd_flow`.

    Returns:
        :class:`FlowResult` with ``x`` (N, d) and ``y`` (N, n), bit-identical to the input ``y``.
    """
    check_points("y", y)
    check_pair(x0, target_x, "x0", "target_x")
    check_pair(y, target_y, "y", "target_y")
    if y.shape[0] != x0.shape[0] or target_y.shape[0] != target_x.shape[0]:
        raise ValueError(
            f"x0 {tuple(x0.shape)} and y {tuple(y.shape)} must have the same number of rows, and so must "
            f"target_x {tuple(target_x.shape)} and target_y {tuple(target_y.shape)}"
        )
    return _run(
        torch.cat([x0, y], 1),
        x0.shape[1],
        torch.cat([target_x, target_y], 1),
        n_steps,
        step_size=step_size,
        momentum=momentum,
        gradient=gradient or gradient_estimator(n_projections),
        velocity=velocity,
        record_every=record_every,
        snapshot_steps=snapshot_steps,
        generator=generator,
        progress=progress,
    )
