r"""How a learned flow runs: its projections and its schedule, one small named type each [method §3, §4].

**Projections** (how the gradient of MMD² in the joint space is estimated at each flow step):

- :class:`Exact`: the exact gradient of MMD² with the negative distance kernel (:func:`cmmd.energy.mmd2_grad`),
  O((N+M)² D) per step; no projection noise.
- :class:`Sliced`: P directions uniform on the sphere of the whole joint vector (x, y), the sliced
  gradient c_D/P Σ_p ∂F_1(⟨ξ_p, ·⟩) ξ_p of :func:`cmmd.sliced.sliced_mmd2_grad` [method §1].
- :class:`Patches`: the authors' locally connected multi-scale projections for images: per scale, P Gaussian
  patterns of side p upsampled to a window of side w, one random window position per step
  (:class:`cmmd.projections.PatchProjections`) [method §4].

Each builds its :data:`cmmd.flow.GradientFn` for given shapes (:meth:`Sliced.gradient`), prints itself in one
line (``str``) and round-trips through a plain dict (:func:`projection_from_dict`), which is what a checkpoint
records.

**Schedule** (:class:`Schedule`): the flow steps T_l and the momentum m_l of each network l = 1..L, computed
once. :meth:`Schedule.growing` is the authors' rule [method §3]: T_1 = ``first_steps`` and
T_{l+1} = min(T_l + min(T_1·2^{l−1}, ``max_increment``), ``max_steps``); m_l = min(m + (l−1)·increment, max).
A pyramid level that stops once ``total_steps`` flow steps are simulated passes ``total_steps`` instead of
``n_networks``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Union

from cmmd._checks import check_nonnegative_int, check_number, check_positive_int
from cmmd.flow import GradientFn, gradient_estimator
from cmmd.projections import patch_gradient
from cmmd.sliced import DEFAULT_BLOCK

Y_MODES = ("vector", "window")
SLICINGS = ("joint", "local")


@dataclass(frozen=True)
class Exact:
    """The exact gradient of MMD² (no projections)."""

    def gradient(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...], *,
                 max_block: int = DEFAULT_BLOCK) -> GradientFn:
        """The gradient function for joint vectors [x_flat, y_flat] (shapes unused)."""
        return gradient_estimator(None)

    def __str__(self) -> str:
        return "full, exact gradient"


@dataclass(frozen=True)
class Sliced:
    """Fully connected projections: ``n_projections`` = P directions uniform on the joint sphere."""

    n_projections: int

    def __post_init__(self) -> None:
        check_positive_int("Sliced.n_projections", self.n_projections)

    def gradient(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...], *,
                 max_block: int = DEFAULT_BLOCK) -> GradientFn:
        """The sliced gradient with P directions (shapes unused: the directions span the whole joint vector)."""
        return gradient_estimator(self.n_projections)

    def __str__(self) -> str:
        return f"full, P={self.n_projections}"


@dataclass(frozen=True)
class Patches:
    """Locally connected multi-scale patch projections [method §4] (:func:`cmmd.projections.patch_gradient`).

    Attributes:
        patch_size: p, side of the Gaussian patterns.
        windows: window sides w = f·p, one per scale (a size may repeat: each is its own random window per step).
        weights: λ per scale.
        n_projections: P per scale.
        y_mode: ``"vector"`` (the whole condition with its own direction) or ``"window"`` (CT: the same window of
            the image-shaped condition).
        slicing: ``"joint"`` (the authors' constant c_{d+n} [code]) or ``"local"`` (c_k of each scale).
    """

    patch_size: int
    windows: tuple[int, ...]
    weights: tuple[float, ...]
    n_projections: int
    y_mode: str = "vector"
    slicing: str = "joint"

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(self.windows))
        object.__setattr__(self, "weights", tuple(self.weights))
        check_positive_int("Patches.patch_size", self.patch_size)
        check_positive_int("Patches.n_projections", self.n_projections)
        if not self.windows or len(self.windows) != len(self.weights):
            raise ValueError(f"Patches: one weight per window is needed, got {len(self.windows)} windows and "
                             f"{len(self.weights)} weights")
        if self.y_mode not in Y_MODES or self.slicing not in SLICINGS:
            raise ValueError(f"Patches: y_mode must be one of {Y_MODES} and slicing one of {SLICINGS}, "
                             f"got {self.y_mode!r} and {self.slicing!r}")

    def gradient(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...], *,
                 max_block: int = DEFAULT_BLOCK) -> GradientFn:
        """The patch gradient for images of ``x_shape`` (C, H, W) with conditions of ``y_shape``."""
        return patch_gradient(
            x_shape, y_shape, patch_size=self.patch_size, windows=self.windows, weights=self.weights,
            n_projections=self.n_projections, y_mode=self.y_mode, slicing=self.slicing, max_block=max_block,
        )

    def __str__(self) -> str:
        sizes = sorted(set(self.windows))
        if len(sizes) > 6:
            windows = f"{sizes[0]} … {sizes[-1]} ({len(sizes)} sizes)"
        else:
            windows = ", ".join(f"{w}×{self.windows.count(w)}" if self.windows.count(w) > 1 else str(w)
                                for w in sizes)
        return f"patches p={self.patch_size}, windows {windows}, P={self.n_projections} each"


Projection = Union[Exact, Sliced, Patches]
PROJECTION_TYPES: dict[str, type] = {"exact": Exact, "sliced": Sliced, "patches": Patches}


def projection_to_dict(projection: Projection) -> dict[str, Any]:
    """``{"kind": "sliced", "n_projections": 50}`` and the like: what a checkpoint records."""
    kind = next(name for name, cls in PROJECTION_TYPES.items() if type(projection) is cls)
    return {"kind": kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(projection).items()}}


def projection_from_dict(state: dict[str, Any]) -> Projection:
    """The inverse of :func:`projection_to_dict`; a bad dict raises ``ValueError``."""
    state = dict(state)
    cls = PROJECTION_TYPES.get(state.pop("kind", None))
    if cls is None or set(state) - {f.name for f in fields(cls)}:
        raise ValueError(f"not a projection record: {state!r:.120}")
    return cls(**state)


def check_projection(name: str, projection: object) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``projection`` is an :class:`Exact`, :class:`Sliced` or
    :class:`Patches`."""
    if not isinstance(projection, tuple(PROJECTION_TYPES.values())):
        raise ValueError(f"{name} must be Exact(), Sliced(P) or Patches(...) from cmmd.flowspec, "
                         f"got {projection!r:.80}")


def with_n_projections(projection: Projection, n_projections: int) -> Projection:
    """The same projections with P = ``n_projections`` (per scale for :class:`Patches`)."""
    if isinstance(projection, Exact):
        raise ValueError("n_projections: this flow uses the exact gradient (no projections); pass "
                         "projection=Sliced(P) to project instead")
    return type(projection)(**{**asdict(projection), "n_projections": n_projections})


@dataclass(frozen=True)
class Schedule:
    """Flow steps T_l and momentum m_l of each network l = 1..L.

    Attributes:
        steps: (T_1, …, T_L), each >= 1.
        momenta: (m_1, …, m_L), each in [0, 1): the flow of network l runs v ← ∇F + m_l v.
    """

    steps: tuple[int, ...]
    momenta: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "momenta", tuple(float(m) for m in self.momenta))
        if not self.steps or len(self.steps) != len(self.momenta):
            raise ValueError(f"Schedule: one momentum per network is needed, got {len(self.steps)} step counts "
                             f"and {len(self.momenta)} momenta")
        for l, (t, m) in enumerate(zip(self.steps, self.momenta), start=1):
            check_positive_int(f"Schedule.steps[network {l}]", t)
            check_number(f"Schedule.momenta[network {l}] (the flow diverges at m >= 1)", m, low=0, high=1,
                         high_open=True)

    @property
    def n_networks(self) -> int:
        """L, the number of networks."""
        return len(self.steps)

    @property
    def total_steps(self) -> int:
        """Σ_l T_l, the flow steps simulated in all."""
        return sum(self.steps)

    @classmethod
    def growing(cls, n_networks: int | None = None, *, first_steps: int, max_increment: int = 0,
                max_steps: int = 30_000, momentum: float = 0.0, momentum_increment: float = 0.0,
                momentum_max: float = 1.0, total_steps: int | None = None) -> "Schedule":
        """The authors' rule (module docstring): ``n_networks`` networks, or as many as it takes to simulate
        ``total_steps`` flow steps (give exactly one of the two). ``max_increment = 0`` keeps T_l = T_1."""
        if (n_networks is None) == (total_steps is None):
            raise ValueError("Schedule.growing needs exactly one of n_networks and total_steps")
        check_positive_int("first_steps", first_steps)
        check_positive_int("max_steps", max_steps)
        check_nonnegative_int("max_increment", max_increment)  # a negative one would shrink T_l
        check_number("momentum_increment", momentum_increment, low=0)
        if n_networks is not None:
            check_positive_int("n_networks", n_networks)
        else:
            check_positive_int("total_steps", total_steps)
        steps = [min(first_steps, max_steps)]
        while (n_networks is not None and len(steps) < n_networks) or (
                total_steps is not None and sum(steps) < total_steps):
            increment = min(first_steps * 2 ** (len(steps) - 1), max_increment)
            steps.append(min(steps[-1] + increment, max_steps))
        momenta = [min(momentum + l * momentum_increment, momentum_max) if momentum_increment else momentum
                   for l in range(len(steps))]
        return cls(tuple(steps), tuple(momenta))

    @classmethod
    def constant(cls, n_networks: int, *, steps: int, momentum: float = 0.0) -> "Schedule":
        """L networks of T flow steps each, all with momentum m."""
        check_positive_int("n_networks", n_networks)
        return cls((steps,) * n_networks, (momentum,) * n_networks)

    def __str__(self) -> str:
        steps = f"T = {self.steps[0]}" if len(set(self.steps)) == 1 else f"T = {self.steps[0]} … {self.steps[-1]}"
        momenta = (f"m = {self.momenta[0]:g}" if len(set(self.momenta)) == 1
                   else f"m = {self.momenta[0]:g} … {self.momenta[-1]:g}")
        return f"{self.n_networks} networks, {steps}, {momenta}"
