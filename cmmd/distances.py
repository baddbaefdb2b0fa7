r"""Distances between sample sets with the negative distance kernel K(a, b) = -||a - b||: estimators of MMD².

For samples x_1..x_N ~ μ and y_1..y_M ~ ν in R^d, the squared MMD [method §1]

.. math::

    \mathrm{MMD}^2_K(\mu, \nu) = \mathbb E\|X - Y\| - \tfrac12\mathbb E\|X - X'\| - \tfrac12\mathbb E\|Y - Y'\|

is half the energy distance. Two estimators of it from samples, both exact sums over all pairs
(computed by :mod:`cmmd.energy` in tiles of bounded memory):

* the **V-statistic** (the MMD² of the empirical measures, the X' = X terms included): ≥ 0, biased
  upwards by about (E||X - X'||/N + E||Y - Y'||/M)/2, so two independent sets from one distribution give
  a positive "noise floor";
* the **U-statistic** (self terms over pairs j ≠ j' only): unbiased, so it is ≈ 0 on average for
  μ = ν and can be negative.

Batched variants take (B, S, d) tensors, B pairs of sample sets. Inputs are never changed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cmmd._checks import check_floating, check_pair
from cmmd.energy import DEFAULT_BLOCK, mean_distance, mmd2

__all__ = ["energy_distance", "energy_distances", "mmd2_unbiased"]


def energy_distance(x: Tensor, y: Tensor, *, max_block: int = DEFAULT_BLOCK) -> Tensor:
    r"""Energy distance between the empirical measures of x (N, d) and y (M, d); a scalar tensor.

    .. math::

        \mathcal E(x, y) = 2\,\mathbb E\|X - Y\| - \mathbb E\|X - X'\| - \mathbb E\|Y - Y'\|
                         = 2\,\mathrm{MMD}^2_K, \quad K(a, b) = -\|a - b\|,

    with V-statistics (the X' = X terms included), computed exactly by :func:`cmmd.energy.mmd2` in tiles
    of at most ``max_block`` distances (the tiling changes only the rounding). Zero when the two clouds
    are equal as multisets of points.
    """
    check_pair(x, y)
    return 2.0 * mmd2(x, y, max_block=max_block)


def energy_distances(a: Tensor, b: Tensor, *, max_block: int = DEFAULT_BLOCK) -> Tensor:
    """Energy distance between the sample sets a[i] and b[i] for each i, by :func:`energy_distance`.

    Args:
        a: (B, S, d), B sets of S samples.
        b: (B, S', d), as many sets, of S' samples each (S' may differ from S).
        max_block: distances held at once; smaller tiles (e.g. 2**18) fit CPU caches better.

    Returns:
        (B,) tensor of a's dtype and device: entry i is E(a[i], b[i]).
    """
    check_floating("a", a)
    check_floating("b", b)
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"a and b must have shapes (B, S, d) and (B, S', d) with one B, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return torch.stack([energy_distance(u, v, max_block=max_block) for u, v in zip(a, b)])


def mmd2_unbiased(x: Tensor, y: Tensor, *, max_block: int = DEFAULT_BLOCK) -> Tensor:
    r"""Unbiased U-statistic estimate of MMD²_K between the distributions of x (N, d) and y (M, d).

    .. math::

        \widehat{\mathrm{MMD}^2_U} = \frac{1}{NM}\sum_{i,k}\|x_i - y_k\|
            - \frac{1}{2N(N-1)}\sum_{i \ne j}\|x_i - x_j\| - \frac{1}{2M(M-1)}\sum_{k \ne l}\|y_k - y_l\|,

    computed as ``mean_distance(x, y) - 0.5·mean_distance(x, x)·N/(N-1) - 0.5·mean_distance(y, y)·M/(M-1)``
    (:func:`cmmd.energy.mean_distance`; the zero diagonal of the self terms is removed by the factors).
    For independent samples its expectation is MMD²_K(μ, ν) exactly, so for μ = ν it scatters around 0
    and is negative about half the time.

    Args:
        x: (N, d) samples, N >= 2.
        y: (M, d) samples, M >= 2.
        max_block: distances held at once by :func:`cmmd.energy.mean_distance`.

    Returns:
        Scalar tensor of x's dtype.
    """
    check_pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd2_unbiased needs at least 2 samples in x and in y, got N = {n}, M = {m}")
    self_x = mean_distance(x, x, max_block=max_block) * n / (n - 1)
    self_y = mean_distance(y, y, max_block=max_block) * m / (m - 1)
    return mean_distance(x, y, max_block=max_block) - 0.5 * self_x - 0.5 * self_y
