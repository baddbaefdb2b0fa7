r"""Random projections for images: fully connected, and locally connected multi-scale patches [method §4].

**Fully connected** (:func:`full_gradient`): directions uniform on the sphere of the whole joint
vector (x, y), the sliced gradient of :mod:`cmmd.sliced`.

**Locally connected, multi-scale** (:func:`patch_gradient`, the authors' projections for images [code]).
Per scale with window side w = f·p (p the patch size, f the upsampling factor) and weight λ:

1. draw P Gaussian patterns a_1..a_P of shape (C, p, p) and upsample them by nearest neighbour ×f to
   (C, w, w); draw a Gaussian part b_p for the condition y (``y_mode``, below);
2. normalise jointly: ξ_p = (up_f(a_p), b_p) / ‖(up_f(a_p), b_p)‖;
3. pick ONE window position (top, left), uniform on the H×W torus, shared by the P directions; the
   window wraps around the image borders (periodic);
4. project the window of every particle and target (plus its y part) onto the ξ_p, take the exact 1D
   gradients by one sort (:func:`cmmd.sliced.mmd2_grad_1d`), back-project into that window only:

   .. math::

       \nabla_{x_i}\big|_{\text{window}} \mathrel{+}= \lambda \, \frac{c}{P} \sum_{p=1}^P
           \partial_i F_1(\langle \xi_p, z\rangle; \langle \xi_p, t\rangle)\; \xi_p^{x},

   and sum the scales; pixels outside every window get no gradient in this step.

**What one scale estimates.** A direction built from an upsampled pattern is block-constant on f×f
blocks. Write Π for the orthogonal projection of (window, y) onto the subspace V of block-constant
windows ⊕ condition, of dimension k = C·p² + n_y. When the raw Gaussian (up_f(a), b) is isotropic in V
(f = 1, or ``y_mode="window"`` where b is upsampled too), the normalised directions are uniform on the
unit sphere of V and, by the slicing theorem [method §1], with c = c_k the term is an *unbiased*
estimate of ∇_x MMD²(Π#μ, Π#ν): the gradient of the MMD² between the block-averaged window marginals
of particles and targets (averaged over the uniformly drawn window position). With ``y_mode="vector"``
and f > 1 the authors' construction weights the x part f times more than y (‖up_f(a)‖ = f‖a‖), so the
directions are uniform only after that anisotropic rescaling: the term is then the gradient of a
sliced discrepancy of the same marginals with y down-weighted, not exactly an MMD². ``slicing="local"``
(the default) uses c_k. The authors' code multiplies every scale by the constant of the whole joint
space, c_D with D = d + n (``slicing="joint"``); that only rescales each scale by c_D/c_k (≈ √(D/k)),
which their per-scale weights were tuned with, so the ``paper`` configs use ``"joint"`` to reproduce
their step sizes exactly.

**The y part** (``y_mode``):

- ``"vector"``: the whole condition vector (flattened y) is appended with its own Gaussian direction,
  as the authors do for class labels (10·one-hot), inpainting (the observed rows) and super-resolution
  (the low-resolution image). k = C·p² + n.
- ``"window"``: y is an image with the spatial size of x (CT: the FBP image, y_shape (C_y, H, W)); the
  same window of y is cut out and gets its own upsampled pattern, as in the authors' CT code.
  k = (C + C_y)·p².

**Cost.** Projecting a window onto an upsampled pattern equals projecting its f×f block sums onto the
small pattern, so one scale costs O((N+M)·C·w²) to cut and pool the windows, O(P·(N+M)·k) for the
products and one batched sort of P rows of N+M values; the back-projection is O(N·P·k) plus the
upsampling of the (N, C, p, p) result. The P directions are drawn at once and processed in blocks of at
most ``max_block`` sorted entries (memory bound), so the result does not depend on ``max_block``; only a P
whose P·k direction entries exceed max(``max_block``, :data:`cmmd.sliced.DIRECTIONS_AT_ONCE`) draws them
block by block instead, so that memory stays bounded (:func:`cmmd.sliced.block_rows`).
The sort dominates; on the CPU :func:`cmmd.sliced.mmd2_grad_1d_joint` sorts packed int64 keys with NumPy's SIMD sort,
4–6× faster than ``torch.sort`` (one MNIST step of the paper setting, 5 scales, P = 500: ≈ 0.2 s at
N = 2,000 and 2–4 s at N = 20,000 on one core of the 2-core build machine, against ≈ 0.85 s and
≈ 11 s with ``torch.sort``).

**Pyramid** (CIFAR-10, CelebA; [method §4]): :func:`downsample_images` gives the targets of a coarse
level (f×f average pooling, as the authors' ``avg_pool2d``), :func:`upsample_particles` moves particles
one level up (nearest neighbour ×2 plus 0.07·N(0, 1) noise [code]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from cmmd._checks import check_floating, check_pair, check_positive_int
from cmmd.flow import GradientFn, gradient_estimator
from cmmd.sliced import DEFAULT_BLOCK, block_rows, mmd2_grad_1d_joint, sliced_factor

Y_MODES = ("vector", "window")
SLICINGS = ("local", "joint")


@dataclass(frozen=True)
class PatchScale:
    """One scale of :class:`PatchProjections`: window side ``window`` = ``factor`` · patch size, weight λ."""

    window: int
    factor: int
    weight: float


class PatchProjections:
    """Locally connected multi-scale patch projections as a :data:`cmmd.flow.GradientFn` (module docstring).

    Called as ``grad = proj(particles, targets, generator)`` with joint vectors
    ``particles`` (N, D) and ``targets`` (M, D), D = d + n, whose first d = C·H·W columns are the
    image x (row-major (C, H, W)) and whose last n = prod(y_shape) columns are the condition y.
    Returns (N, D): the x columns hold the estimate, the y columns are zero (y never moves).

    Build it with :func:`patch_gradient`.
    """

    def __init__(
        self,
        x_shape: tuple[int, int, int],
        y_shape: tuple[int, ...],
        *,
        patch_size: int,
        windows: Sequence[int],
        weights: Sequence[float],
        n_projections: int,
        y_mode: str = "vector",
        slicing: str = "local",
        max_block: int = DEFAULT_BLOCK,
    ) -> None:
        self.x_shape = _image_shape("x_shape", x_shape)
        self.y_shape = _y_shape(y_shape)
        check_positive_int("patch_size", patch_size)
        check_positive_int("n_projections", n_projections)
        check_positive_int("max_block", max_block)
        if y_mode not in Y_MODES:
            raise ValueError(f"y_mode must be one of {Y_MODES}, got {y_mode!r}")
        if slicing not in SLICINGS:
            raise ValueError(f"slicing must be one of {SLICINGS}, got {slicing!r}")
        self.patch_size, self.n_projections, self.max_block = patch_size, n_projections, max_block
        self.y_mode, self.slicing = y_mode, slicing
        self.scales = _scales(self.x_shape, patch_size, windows, weights)
        if y_mode == "window" and (len(self.y_shape) != 3 or self.y_shape[1:] != self.x_shape[1:]):
            raise ValueError(
                f"y_mode='window' needs an image condition of shape (C_y, {self.x_shape[1]}, {self.x_shape[2]}) "
                f"(the spatial size of x), got y_shape {self.y_shape}; use y_mode='vector' otherwise"
            )
        self.d = math.prod(self.x_shape)
        self.n = math.prod(self.y_shape)

    # ------------------------------------------------------------------ dimensions
    @property
    def local_dim(self) -> int:
        """k: dimension of the subspace the directions of one scale are uniform on (same for all scales)."""
        c, p = self.x_shape[0], self.patch_size
        y_part = self.y_shape[0] * p * p if self.y_mode == "window" else self.n
        return c * p * p + y_part

    def constant(self) -> float:
        """The slicing constant c applied to every scale: c_k (``"local"``) or c_{d+n} (``"joint"``)."""
        return sliced_factor(self.local_dim if self.slicing == "local" else self.d + self.n)

    def __repr__(self) -> str:
        windows = tuple(s.window for s in self.scales)
        weights = tuple(s.weight for s in self.scales)
        return (f"PatchProjections(x_shape={self.x_shape}, y_shape={self.y_shape}, patch_size={self.patch_size}, "
                f"windows={windows}, weights={weights}, n_projections={self.n_projections}, "
                f"y_mode={self.y_mode!r}, slicing={self.slicing!r})")

    # ------------------------------------------------------------------ the estimate
    def __call__(
        self, particles: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        check_pair(particles, targets, "particles", "targets")
        if particles.shape[1] != self.d + self.n:
            raise ValueError(
                f"particles must be joint vectors of d + n = {self.d} + {self.n} = {self.d + self.n} columns "
                f"(x of shape {self.x_shape} flattened, then y of shape {self.y_shape}), got {tuple(particles.shape)}"
            )
        n_particles = particles.shape[0]
        x_img = particles[:, : self.d].view(n_particles, *self.x_shape)
        t_img = targets[:, : self.d].view(targets.shape[0], *self.x_shape)
        grad = torch.zeros_like(particles)
        grad_img = grad[:, : self.d].view(n_particles, *self.x_shape)
        constant = self.constant() / self.n_projections
        for scale in self.scales:
            top, left = self._position(particles, generator)
            small = self._scale_gradient(particles, targets, x_img, t_img, scale, top, left, generator)
            window = _upsample(small.mul_(constant * scale.weight), scale.factor)
            add_window(grad_img, window, top, left)
        return grad

    def _position(self, like: torch.Tensor, generator: torch.Generator | None) -> tuple[int, int]:
        """One window position (top, left), uniform on the H×W torus."""
        _, height, width = self.x_shape
        rows = torch.randint(0, height, (1,), generator=generator, device=like.device)
        cols = torch.randint(0, width, (1,), generator=generator, device=like.device)
        return int(rows), int(cols)

    def window_features(
        self, joint: torch.Tensor, images: torch.Tensor, scale: PatchScale, top: int, left: int
    ) -> torch.Tensor:
        """Coordinates of (window, y) in the pooled basis: (B, k) = [f×f block sums of the window, y part].

        ``joint`` (B, D) are joint vectors, ``images`` = their x part viewed as (B, C, H, W). For
        ``y_mode="window"`` the y part is the same window of the y image, pooled the same way.
        """
        pooled = _block_sums(take_window(images, top, left, scale.window), scale.factor)
        y = joint[:, self.d :]
        if self.y_mode == "window":
            y_img = y.view(joint.shape[0], *self.y_shape)
            y = _block_sums(take_window(y_img, top, left, scale.window), scale.factor)
        return torch.cat([pooled.flatten(1), y.reshape(joint.shape[0], -1)], 1)

    def directions(
        self, scale: PatchScale, generator: torch.Generator | None, like: torch.Tensor, count: int | None = None
    ) -> torch.Tensor:
        """The P directions of one scale in the pooled basis, (P, k), divided by the full directions' norms
        (``count`` rows instead of P when given: one block of a huge P).

        Row p is (a_p, b_p) / ‖(up_f(a_p), b_p)‖ with ‖up_f(a)‖ = f·‖a‖ (b is upsampled too in window
        mode), so that ⟨row_p, window_features(z)⟩ = ⟨ξ_p, (window of z, y part)⟩ exactly.
        """
        kx = self.x_shape[0] * self.patch_size**2
        raw = torch.randn(self.n_projections if count is None else count, self.local_dim, generator=generator,
                          dtype=like.dtype, device=like.device)
        y_factor = scale.factor if self.y_mode == "window" else 1
        norm = torch.sqrt(scale.factor**2 * raw[:, :kx].square().sum(1) + y_factor**2 * raw[:, kx:].square().sum(1))
        return raw / norm[:, None]

    def _scale_gradient(
        self,
        particles: torch.Tensor,
        targets: torch.Tensor,
        x_img: torch.Tensor,
        t_img: torch.Tensor,
        scale: PatchScale,
        top: int,
        left: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Σ_p ∂F₁ · a_p/‖ξ_p‖ of one scale: the window gradient in the pooled basis, (N, C, p, p), unscaled."""
        n_particles = particles.shape[0]
        features = torch.cat([
            self.window_features(particles, x_img, scale, top, left),
            self.window_features(targets, t_img, scale, top, left),
        ])
        rows, at_once = block_rows(self.n_projections, self.local_dim, features.shape[0], self.max_block)
        xi = self.directions(scale, generator, particles) if at_once else None
        kx = self.x_shape[0] * self.patch_size**2
        acc = particles.new_zeros(n_particles, kx)
        for start in range(0, self.n_projections, rows):
            count = min(rows, self.n_projections - start)
            block = xi[start : start + count] if at_once else self.directions(scale, generator, particles, count)
            grad_1d = mmd2_grad_1d_joint(block @ features.T, n_particles)  # (P_b, N)
            acc.addmm_(grad_1d.T, block[:, :kx])
        return acc.view(n_particles, self.x_shape[0], self.patch_size, self.patch_size)


def patch_gradient(
    x_shape: tuple[int, int, int],
    y_shape: tuple[int, ...],
    *,
    patch_size: int,
    windows: Sequence[int],
    weights: Sequence[float],
    n_projections: int,
    y_mode: str = "vector",
    slicing: str = "local",
    max_block: int = DEFAULT_BLOCK,
) -> PatchProjections:
    """Locally connected multi-scale patch projections for joint vectors [x_flat, y_flat] (module docstring).

    Args:
        x_shape: (C, H, W) of one image x.
        y_shape: shape of one condition y (flattened into the last columns of the joint vectors).
        patch_size: p, the side of the Gaussian patterns.
        windows: window sides w in pixels, one per scale, each a multiple of p and at most min(H, W)
            ([method §5] lists them, e.g. MNIST 5, 10, 15, 20, 25 with p = 5); factor f = w / p.
        weights: λ per scale.
        n_projections: P per scale.
        y_mode: ``"vector"`` (whole y with its own Gaussian direction) or ``"window"`` (same window of an image y).
        slicing: ``"local"`` (c_k, each scale unbiased for the block-averaged window marginals) or
            ``"joint"`` (c_{d+n}, the authors' constant).
        max_block: largest number of projected values sorted at once (memory bound).

    Returns:
        :class:`PatchProjections`, a :data:`cmmd.flow.GradientFn` returning (N, d + n) with zero y columns.
    """
    return PatchProjections(
        x_shape, y_shape, patch_size=patch_size, windows=windows, weights=weights, n_projections=n_projections,
        y_mode=y_mode, slicing=slicing, max_block=max_block,
    )


def full_gradient(n_projections: int | None) -> GradientFn:
    """Fully connected projections: the sliced gradient with P directions uniform on the joint sphere
    (``None``: the exact gradient). The same as :func:`cmmd.flow.gradient_estimator`."""
    return gradient_estimator(n_projections)


# ---------------------------------------------------------------------- 1D gradients, fast sort


# ---------------------------------------------------------------------- pyramid
def downsample_images(images: torch.Tensor, factor: int) -> torch.Tensor:
    """f×f average pooling, (B, C, H, W) → (B, C, H/f, W/f): the targets of a coarse pyramid level [code]."""
    _check_images("images", images)
    check_positive_int("factor", factor)
    if images.shape[2] % factor or images.shape[3] % factor:
        raise ValueError(f"the image size {tuple(images.shape[2:])} must be divisible by factor = {factor}")
    return F.avg_pool2d(images, factor) if factor > 1 else images.clone()


def upsample_particles(
    x: torch.Tensor, *, factor: int = 2, noise: float = 0.07, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Move particles one pyramid level up: nearest-neighbour ×``factor`` plus ``noise``·N(0, 1) per pixel.

    [method §4] [code]: at each switch of resolution (1/8 → 1/4 → 1/2 → 1) the particles of the coarse
    level are upsampled ×2 and perturbed by 0.07·N(0, 1), so that the particles that shared a coarse
    block can separate at the finer level.

    Args:
        x: particles (N, C, h, w).
        factor: upsampling factor.
        noise: standard deviation of the added Gaussian noise (0 for none).
        generator: source of the noise.

    Returns:
        Tensor (N, C, factor·h, factor·w).
    """
    _check_images("x", x)
    check_positive_int("factor", factor)
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    up = _upsample(x, factor)
    if noise:
        up.add_(torch.randn(up.shape, generator=generator, dtype=up.dtype, device=up.device), alpha=noise)
    return up


# ---------------------------------------------------------------------- window helpers
def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of (B, C, h, w) by an integer factor: (B, C, f·h, f·w), a new tensor."""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, factor, w, factor).reshape(b, c, h * factor, w * factor)


def _block_sums(window: torch.Tensor, factor: int) -> torch.Tensor:
    """Sums over f×f blocks: (B, C, f·p, f·p) → (B, C, p, p)."""
    if factor == 1:
        return window
    b, c, h, w = window.shape
    return window.reshape(b, c, h // factor, factor, w // factor, factor).sum((3, 5))


def _wrapped_pieces(start: int, size: int, length: int) -> list[tuple[slice, slice]]:
    """Pieces (slice of the image axis, slice of the window axis) of a periodic window of ``size`` at ``start``."""
    if start + size <= length:
        return [(slice(start, start + size), slice(0, size))]
    first = length - start
    return [(slice(start, length), slice(0, first)), (slice(0, size - first), slice(first, size))]


def window_slices(
    top: int, left: int, size: int, height: int, width: int
) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """The at most four rectangles of a size×size window at (top, left) on the H×W torus.

    Returns pairs ((image rows, image cols), (window rows, window cols)); window pixel (i, j) is image
    pixel ((top + i) mod H, (left + j) mod W).
    """
    return [
        ((r_img, c_img), (r_win, c_win))
        for r_img, r_win in _wrapped_pieces(top, size, height)
        for c_img, c_win in _wrapped_pieces(left, size, width)
    ]


def take_window(images: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The periodic window (B, C, size, size) of images (B, C, H, W) at (top, left), a view when it does not wrap."""
    pieces = window_slices(top, left, size, images.shape[2], images.shape[3])
    if len(pieces) == 1:
        (rows, cols), _ = pieces[0]
        return images[:, :, rows, cols]
    out = images.new_empty(images.shape[0], images.shape[1], size, size)
    for (r_img, c_img), (r_win, c_win) in pieces:
        out[:, :, r_win, c_win] = images[:, :, r_img, c_img]
    return out


def add_window(images: torch.Tensor, window: torch.Tensor, top: int, left: int) -> None:
    """images[:, :, (top + i) mod H, (left + j) mod W] += window[:, :, i, j], in place."""
    for (r_img, c_img), (r_win, c_win) in window_slices(top, left, window.shape[2], images.shape[2], images.shape[3]):
        images[:, :, r_img, c_img] += window[:, :, r_win, c_win]


# ---------------------------------------------------------------------- checks
def _image_shape(name: str, shape) -> tuple[int, int, int]:
    shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else ()
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"{name} must be (C, H, W) of positive ints, e.g. (1, 28, 28), got {shape!r}")
    return shape


def _y_shape(shape) -> tuple[int, ...]:
    shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else ()
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"y_shape must be a non-empty tuple of positive ints such as (10,), got {shape!r}")
    return shape


def _scales(x_shape, patch_size: int, windows, weights) -> tuple[PatchScale, ...]:
    windows, weights = tuple(windows), tuple(weights)
    if not windows or len(windows) != len(weights):
        raise ValueError(
            f"windows and weights must be non-empty and of equal length (one weight per scale), "
            f"got {len(windows)} windows and {len(weights)} weights"
        )
    largest = min(x_shape[1], x_shape[2])
    scales = []
    for window, weight in zip(windows, weights):
        check_positive_int("window", window)
        if window % patch_size or window > largest:
            raise ValueError(
                f"each window must be a multiple of patch_size = {patch_size} and at most min(H, W) = {largest}, "
                f"got {window}"
            )
        if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight)):
            raise ValueError(f"weights must be finite numbers, got {weight!r}")
        scales.append(PatchScale(window=window, factor=window // patch_size, weight=float(weight)))
    return tuple(scales)


def _check_images(name: str, images: torch.Tensor) -> None:
    check_floating(name, images)
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
