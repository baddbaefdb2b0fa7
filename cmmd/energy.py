r"""Exact MMD with the negative distance kernel K(x, y) = -||x - y||, in O(NM) time and bounded memory.

For empirical measures mu = 1/N sum_i delta_{x_i} and nu = 1/M sum_k delta_{y_k},

.. math::

    \mathrm{MMD}^2(\mu, \nu) = \frac{1}{NM}\sum_{i,k} \|x_i - y_k\|
        - \frac{1}{2N^2}\sum_{i,j}\|x_i - x_j\| - \frac{1}{2M^2}\sum_{k,l}\|y_k - y_l\|,

which is half the energy distance (the book's page "Method and settings", book/method.md, §1). Its
gradient with respect to the particle x_i is

.. math::

    \nabla_{x_i} \mathrm{MMD}^2 = \frac{1}{NM}\sum_k \frac{x_i - y_k}{\|x_i - y_k\|}
        - \frac{1}{N^2}\sum_j \frac{x_i - x_j}{\|x_i - x_j\|},

with the convention 0/0 = 0 (the subgradient that autograd of ``abs`` also picks). Pairwise distances
are formed in tiles so that at most ``max_block`` entries exist at a time.

Accuracy. The fast route to a tile of distances is the expansion ||a - b||² = ||a||² + ||b||² - 2⟨a, b⟩
(one matrix product), but its rounding error is about eps·(||a||² + ||b||²), which swamps ||a - b||²
for pairs that are close compared with their distance from the origin. Each tile therefore

1. takes the expansion on clouds shifted by a common centre (distances are unchanged by the shift);
2. keeps it for the "far" pairs, ||a - b||² > RATIO·(||a||² + ||b||²): their squared distance is then
   correct to about eps/RATIO relative, and so is their gradient term, whose matrix-product form
   a·Σw - Σ w b (w = 1/||a - b||) loses at most a factor sqrt(2/RATIO) on each term;
3. recomputes the remaining "near" pairs (coincident ones included) from direct differences of the
   unshifted coordinates, as the brute-force reference does: exact 0 for duplicates (the 0/0 = 0
   convention), eps-accurate directions otherwise.

In float64 this matches the brute-force autograd reference to ~1e-14 relative (tests/test_energy.py),
at the speed of the expansion when near pairs are rare, as for spread-out clouds.

Range. MMD² with this kernel is 1-homogeneous, mmd2(s·x, s·y) = s·mmd2(x, y), and its gradient is
0-homogeneous. Both clouds are divided by the power of two 2^k that brings their largest entry into
[1, 2) (exact, barring subnormals); squares then neither overflow nor underflow, so float32 inputs of
any finite size give a correct result. The value is multiplied back by 2^k; where it exceeds the dtype's
range a ValueError says so.
"""

from __future__ import annotations

import math

import torch

from cmmd._checks import check_floating, check_pair, check_positive_int

DEFAULT_BLOCK = 1 << 23  # entries of one tile of the distance matrix (64 MiB in float64)

#: Pairs with ||a - b||² <= RATIO·(||a||² + ||b||²) after centring are recomputed from direct differences.
RATIO = 0.25
NEAR_CHUNK = 1 << 18  # entries of the near pairs' differences formed at once (at most max_block)


def _power_of_two_exponent(x: torch.Tensor, y: torch.Tensor) -> int:
    """Exponent k with max(|x|, |y|) / 2^k in [1, 2), for x (N, d) and y (M, d); 0 when both are all zero."""
    largest = max(float(x.abs().max()), float(y.abs().max()))
    if largest == 0.0:
        return 0
    return math.frexp(largest)[1] - 1  # largest = f·2^e with f in [0.5, 1)


def _times_power_of_two(t: torch.Tensor, k: int) -> torch.Tensor:
    """t·2^k, exact barring subnormals; in steps whose factor 2^step is representable in t's dtype."""
    max_step = math.frexp(torch.finfo(t.dtype).max)[1] - 2
    while k != 0:
        step = max(-max_step, min(max_step, k))
        t = t * 2.0**step
        k -= step
    return t


def _pair_sums(
    a: torch.Tensor, b: torch.Tensor, *, max_block: int, gradient: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Sum of distances and, if ``gradient``, the per-row sums of unit vectors between a (N, d) and b (M, d).

    Returns (S, G) with S = sum_{i,k} ||a_i - b_k|| (a scalar tensor) and G (N, d) with
    G_i = sum_k (a_i - b_k)/||a_i - b_k|| (0/0 = 0), or None when ``gradient`` is False. Far pairs use
    the expansion on centred clouds, near pairs direct differences (module docstring, "Accuracy").
    """
    n, m, dim = a.shape[0], b.shape[0], a.shape[1]
    centre = 0.5 * (a.mean(0) + b.mean(0))
    a_c, b_c = a - centre, b - centre
    a_sq, b_sq = (a_c * a_c).sum(1), (b_c * b_c).sum(1)
    cols = min(m, max_block)
    rows = max(1, min(n, max_block // cols))
    # Near pairs whose (pairs, d) differences are held at once: within max_block, and about 2^18 entries
    # (cache-sized; measured faster than larger chunks).
    pairs_at_once = max(1, min(max_block, NEAR_CHUNK) // dim)
    total = a.new_zeros(())
    grad = torch.zeros_like(a) if gradient else None
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        for c0 in range(0, m, cols):
            c1 = min(m, c0 + cols)
            norms = a_sq[r0:r1, None] + b_sq[None, c0:c1]
            sq = torch.addmm(norms, a_c[r0:r1], b_c[c0:c1].T, beta=1.0, alpha=-2.0)
            near = sq <= RATIO * norms  # also every pair whose expansion rounded to <= 0
            dist = sq.clamp_min_(0.0).sqrt_()
            if gradient:
                # Far pairs: sum_k w_ik (a_i - b_k) = a_i sum_k w_ik - sum_k w_ik b_k with w = 1/dist.
                weight = dist.reciprocal().masked_fill_(near, 0.0)
                grad[r0:r1] += a_c[r0:r1] * weight.sum(1, keepdim=True) - weight @ b_c[c0:c1]
            rows_near, cols_near = near.nonzero(as_tuple=True)
            for p0 in range(0, rows_near.numel(), pairs_at_once):
                i = rows_near[p0 : p0 + pairs_at_once]
                k = cols_near[p0 : p0 + pairs_at_once]
                # (pairs, d) differences of the unshifted coordinates, as in the brute-force reference.
                diff = a.index_select(0, r0 + i).sub_(b.index_select(0, c0 + k))
                exact = (diff * diff).sum(1).sqrt_()
                dist[i, k] = exact
                if gradient:
                    inverse = torch.where(exact > 0, exact.reciprocal(), torch.zeros_like(exact))
                    grad.index_add_(0, r0 + i, diff.mul_(inverse[:, None]))
            total = total + dist.sum()
    return total, grad


def _scaled(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """x/2^k, y/2^k and k, with the largest entry of the pair in [1, 2) (module docstring, "Range")."""
    k = _power_of_two_exponent(x, y)
    return _times_power_of_two(x, -k), _times_power_of_two(y, -k), k


def _unscaled_value(value: torch.Tensor, k: int, what: str) -> torch.Tensor:
    """value·2^k, or a ValueError naming ``what`` when that leaves the dtype's range."""
    out = _times_power_of_two(value, k)
    if not bool(torch.isfinite(out)):
        raise ValueError(
            f"{what} of x and y is {float(value)}·2^{k}, beyond the range of {value.dtype}; "
            f"pass x.double() and y.double(), or rescale both by a common factor"
        )
    return out


def mean_distance(x: torch.Tensor, y: torch.Tensor, *, max_block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Mean pairwise distance (1/(NM)) sum_{i,k} ||x_i - y_k|| for x (N, d), y (M, d); a scalar tensor."""
    check_pair(x, y)
    check_positive_int("max_block", max_block)
    xs, ys, k = _scaled(x, y)
    total, _ = _pair_sums(xs, ys, max_block=max_block, gradient=False)
    return _unscaled_value(total / (x.shape[0] * y.shape[0]), k, "the mean distance")


def mmd2(x: torch.Tensor, y: torch.Tensor, *, max_block: int = DEFAULT_BLOCK) -> torch.Tensor:
    r"""Exact squared MMD with K(x, y) = -||x - y|| between the empirical measures of x and y.

    MMD² = (1/(NM)) Σ_{i,k} ||x_i - y_k|| - (1/(2N²)) Σ_{i,j} ||x_i - x_j|| - (1/(2M²)) Σ_{k,l} ||y_k - y_l||.

    Args:
        x: particles, shape (N, d).
        y: targets, shape (M, d).
        max_block: largest number of pairwise distances held in memory at once.

    Returns:
        Scalar tensor E||X-Y|| - ½E||X-X'|| - ½E||Y-Y'|| (V-statistics; ≥ 0, half the energy distance).
    """
    check_pair(x, y)
    check_positive_int("max_block", max_block)
    xs, ys, k = _scaled(x, y)
    n, m = x.shape[0], y.shape[0]
    xy, _ = _pair_sums(xs, ys, max_block=max_block, gradient=False)
    xx, _ = _pair_sums(xs, xs, max_block=max_block, gradient=False)
    yy, _ = _pair_sums(ys, ys, max_block=max_block, gradient=False)
    value = xy / (n * m) - 0.5 * xx / (n * n) - 0.5 * yy / (m * m)
    return _unscaled_value(value, k, "mmd2")


def mmd2_grad(x: torch.Tensor, y: torch.Tensor, *, max_block: int = DEFAULT_BLOCK) -> torch.Tensor:
    r"""Gradient of :func:`mmd2` with respect to the particles x.

    ∇_{x_i} MMD² = (1/(NM)) Σ_k (x_i - y_k)/||x_i - y_k|| - (1/N²) Σ_j (x_i - x_j)/||x_i - x_j||, 0/0 = 0.

    Args:
        x: particles, shape (N, d).
        y: targets, shape (M, d).
        max_block: largest number of pairwise distances held in memory at once.

    Returns:
        Tensor of shape (N, d), dtype and device of x.
    """
    check_pair(x, y)
    check_positive_int("max_block", max_block)
    xs, ys, _ = _scaled(x, y)  # the gradient is 0-homogeneous: no scaling back
    n, m = x.shape[0], y.shape[0]
    _, to_targets = _pair_sums(xs, ys, max_block=max_block, gradient=True)
    _, to_particles = _pair_sums(xs, xs, max_block=max_block, gradient=True)
    return to_targets / (n * m) - to_particles / (n * n)


def brute_force_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Reference MMD² from the double sums written out, all pairwise distances at once, in float64.

    MMD² = (1/(NM)) Σ_{i,k} ||x_i - y_k|| - (1/(2N²)) Σ_{i,j} ||x_i - x_j|| - (1/(2M²)) Σ_{k,l} ||y_k - y_l||,

    the V-statistic that :func:`mmd2` computes in tiles, here from the (…, N, M, d) differences of the
    unshifted coordinates: O((N + M)² d) memory, for tests and small checks only. Differentiable by
    autograd, with the 0/0 = 0 convention at coincident points (distance and gradient 0 there, the
    subgradient :func:`mmd2_grad` uses).

    Args:
        x: particles, shape (…, N, d).
        y: targets, shape (…, M, d), with the leading batch shape of x (e.g. (P, N, 1) and (P, M, 1)
            for P one-dimensional problems at once).

    Returns:
        float64 tensor of the batch shape (…): one MMD² per batch entry, a scalar for x (N, d), y (M, d).
    """
    check_floating("x", x)
    check_floating("y", y)
    if x.ndim < 2 or x.shape[:-2] != y.shape[:-2] or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"x and y must have shapes (..., N, d) and (..., M, d) with one batch shape and d, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x, y = x.to(torch.float64), y.to(torch.float64)

    def pair_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = ((a[..., :, None, :] - b[..., None, :, :]) ** 2).sum(-1)
        positive = sq > 0
        return torch.where(positive, torch.where(positive, sq, 1.0).sqrt(), 0.0).mean((-2, -1))

    return pair_mean(x, y) - 0.5 * pair_mean(x, x) - 0.5 * pair_mean(y, y)
