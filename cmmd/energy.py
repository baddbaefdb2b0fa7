r"""Exact MMD with the negative distance kernel K(x, y) = -||x - y||, in O(NM) time and bounded memory.

For empirical measures mu = 1/N sum_i delta_{x_i} and nu = 1/M sum_k delta_{y_k},

.. math::

    \mathrm{MMD}^2(\mu, \nu) = \frac{1}{NM}\sum_{i,k} \|x_i - y_k\|
        - \frac{1}{2N^2}\sum_{i,j}\|x_i - x_j\| - \frac{1}{2M^2}\sum_{k,l}\|y_k - y_l\|,

which is half the energy distance (METHOD.md §1, DESIGN.md conventions). Its gradient with respect to
the particle x_i is

.. math::

    \nabla_{x_i} \mathrm{MMD}^2 = \frac{1}{NM}\sum_k \frac{x_i - y_k}{\|x_i - y_k\|}
        - \frac{1}{N^2}\sum_j \frac{x_i - x_j}{\|x_i - x_j\|},

with the convention 0/0 = 0 (the subgradient that autograd of ``abs`` also picks). Pairwise distances
are formed in row blocks so that at most ``max_block`` entries exist at a time.
"""

from __future__ import annotations

import torch

from cmmd._checks import check_pair

DEFAULT_BLOCK = 1 << 23  # entries of one block of the distance matrix (64 MiB in float64)


def _distance_blocks(x: torch.Tensor, y: torch.Tensor, max_block: int):
    """Yield (row slice, distances (b, M)) between consecutive row blocks of x (N, d) and y (M, d).

    Distances use ||a||² + ||b||² − 2⟨a, b⟩ (matrix products). That formula loses the squared distance
    to rounding when it is below ~eps·(||a||² + ||b||²); such pairs are taken as coincident (distance 0),
    so duplicated points get the 0/0 = 0 convention instead of a rounding-noise direction.
    """
    rows = max(1, max_block // max(1, y.shape[0]))
    y_sq = (y * y).sum(1)
    tol = 64.0 * torch.finfo(x.dtype).eps
    for start in range(0, x.shape[0], rows):
        xb = x[start : start + rows]
        norms = (xb * xb).sum(1, keepdim=True) + y_sq
        sq = norms - 2.0 * (xb @ y.T)
        sq = torch.where(sq > tol * norms, sq, torch.zeros_like(sq))
        yield slice(start, start + rows), sq.sqrt_()


def _centre(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift both clouds by a common vector: distances are unchanged, rounding in ||a||²+||b||²−2⟨a,b⟩ shrinks."""
    shift = y.mean(0)
    return x - shift, y - shift


def mean_distance(x: torch.Tensor, y: torch.Tensor, *, max_block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Mean pairwise distance (1/(NM)) sum_{i,k} ||x_i - y_k|| for x (N, d), y (M, d); a scalar tensor."""
    check_pair(x, y)
    x, y = _centre(x, y)
    total = x.new_zeros(())
    for _, dist in _distance_blocks(x, y, max_block):
        total = total + dist.sum()
    return total / (x.shape[0] * y.shape[0])


def mmd2(x: torch.Tensor, y: torch.Tensor, *, max_block: int = DEFAULT_BLOCK) -> torch.Tensor:
    r"""Exact squared MMD with K(x, y) = -||x - y|| between the empirical measures of x and y.

    Args:
        x: particles, shape (N, d).
        y: targets, shape (M, d).
        max_block: largest number of pairwise distances held in memory at once.

    Returns:
        Scalar tensor E||X-Y|| - ½E||X-X'|| - ½E||Y-Y'|| (V-statistics; ≥ 0, half the energy distance).
    """
    check_pair(x, y)
    return (
        mean_distance(x, y, max_block=max_block)
        - 0.5 * mean_distance(x, x, max_block=max_block)
        - 0.5 * mean_distance(y, y, max_block=max_block)
    )


def _kernel_gradient(x: torch.Tensor, y: torch.Tensor, max_block: int) -> torch.Tensor:
    """sum_k (x_i - y_k)/||x_i - y_k|| for every i, with 0/0 = 0; shape (N, d)."""
    out = torch.empty_like(x)
    for rows, dist in _distance_blocks(x, y, max_block):
        weight = torch.where(dist > 0, dist.reciprocal(), torch.zeros_like(dist))
        out[rows] = x[rows] * weight.sum(1, keepdim=True) - weight @ y
    return out


def mmd2_grad(x: torch.Tensor, y: torch.Tensor, *, max_block: int = DEFAULT_BLOCK) -> torch.Tensor:
    r"""Gradient of :func:`mmd2` with respect to the particles x (module docstring formula).

    Args:
        x: particles, shape (N, d).
        y: targets, shape (M, d).
        max_block: largest number of pairwise distances held in memory at once.

    Returns:
        Tensor of shape (N, d), dtype and device of x.
    """
    check_pair(x, y)
    x, y = _centre(x, y)
    n, m = x.shape[0], y.shape[0]
    return _kernel_gradient(x, y, max_block) / (n * m) - _kernel_gradient(x, x, max_block) / (n * n)
