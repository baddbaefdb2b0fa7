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

Distances in a given feature space, for judging realism [method §6]: the Fréchet distance of the
Gaussians fitted to two feature sets (FID when the features are a classifier's) and the kernel distance
(KID, an unbiased MMD² with a cubic polynomial kernel). Both compare distributions through fixed features
and know nothing of the negative distance kernel above.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cmmd._checks import check_floating, check_pair, check_positive_int
from cmmd.energy import DEFAULT_BLOCK, mean_distance, mmd2

__all__ = [
    "energy_distance",
    "energy_distances",
    "mmd2_unbiased",
    "energy_distance_unbiased",
    "frechet_distance",
    "frechet_distance_from_moments",
    "kernel_distance",
]

KERNEL_BLOCK = 1 << 22  # kernel entries formed at once by kernel_distance


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


def energy_distance_unbiased(x: Tensor, y: Tensor, *, max_block: int = DEFAULT_BLOCK) -> Tensor:
    r"""Unbiased U-statistic estimate of the energy distance between the distributions of x (N, d) and y (M, d).

    .. math::

        \widehat{\mathcal E}_U = \frac{2}{NM}\sum_{i,k}\|x_i - y_k\|
            - \frac{1}{N(N-1)}\sum_{i \ne i'}\|x_i - x_{i'}\|
            - \frac{1}{M(M-1)}\sum_{k \ne k'}\|y_k - y_{k'}\| = 2\,\widehat{\mathrm{MMD}^2_U},

    twice :func:`mmd2_unbiased` [method §6]. Its expectation is the energy distance exactly, so for one
    distribution it scatters around 0 (negative about half the time), where the V-statistic
    :func:`energy_distance` sits at its noise floor E||X - X'||/N + E||Y - Y'||/M above 0.

    Args:
        x: (N, d) samples, N >= 2.
        y: (M, d) samples, M >= 2.
        max_block: distances held at once.

    Returns:
        Scalar tensor of x's dtype.
    """
    return 2.0 * mmd2_unbiased(x, y, max_block=max_block)


def _check_features(a: Tensor, b: Tensor, names: tuple[str, str], least: int) -> None:
    check_pair(a, b, *names)
    if a.shape[0] < least or b.shape[0] < least:
        raise ValueError(
            f"{names[0]} and {names[1]} need at least {least} rows (samples) each, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}; pass more samples"
        )


def _symmetric_sqrt(c: Tensor) -> Tensor:
    """C^{1/2} = V diag(sqrt(max(λ, 0))) V^T of a symmetric positive semi-definite C, by ``eigh``."""
    lam, vec = torch.linalg.eigh(c)
    return (vec * lam.clamp(min=0).sqrt()) @ vec.T


def frechet_distance_from_moments(mu_a: Tensor, cov_a: Tensor, mu_b: Tensor, cov_b: Tensor) -> Tensor:
    r"""Fréchet (2-Wasserstein) distance squared between N(μ_a, C_a) and N(μ_b, C_b), in float64.

    .. math::

        d_F^2 = \|\mu_a - \mu_b\|^2 + \operatorname{tr}\big(C_a + C_b - 2 (C_a C_b)^{1/2}\big),
        \qquad \operatorname{tr}(C_a C_b)^{1/2} = \operatorname{tr}\big(C_a^{1/2} C_b C_a^{1/2}\big)^{1/2},

    the second form because C_a C_b is similar to the symmetric positive semi-definite
    :math:`C_a^{1/2} C_b C_a^{1/2}`, whose square-root trace is the sum of the square roots of its
    eigenvalues (``eigh``; rounding-negative eigenvalues count as 0). No non-symmetric matrix square root
    is formed, so no complex parts appear for singular covariances (fewer samples than features). The result
    is not clamped: for equal moments it is 0 up to rounding (±1e-12 relative to tr C_a + tr C_b).

    Args:
        mu_a, mu_b: (k,) means.
        cov_a, cov_b: (k, k) symmetric positive semi-definite covariances.

    Returns:
        Scalar float64 tensor on mu_a's device.
    """
    for name, t in (("mu_a", mu_a), ("cov_a", cov_a), ("mu_b", mu_b), ("cov_b", cov_b)):
        check_floating(name, t)
    k = mu_a.shape[0] if mu_a.ndim == 1 else -1
    shapes = [tuple(t.shape) for t in (mu_a, cov_a, mu_b, cov_b)]
    if k < 1 or shapes != [(k,), (k, k), (k,), (k, k)]:
        raise ValueError(f"need mu_a (k,), cov_a (k, k), mu_b (k,), cov_b (k, k) with one k, got shapes {shapes}")
    device = mu_a.device
    mu_a, cov_a, mu_b, cov_b = (t.to(device=device, dtype=torch.float64) for t in (mu_a, cov_a, mu_b, cov_b))
    for name, c in (("cov_a", cov_a), ("cov_b", cov_b)):
        if float((c - c.T).abs().max()) > 1e-10 * max(float(c.abs().max()), 1e-300):
            raise ValueError(f"{name} is not symmetric; pass a covariance matrix (e.g. (C + C.T) / 2)")
    root_a = _symmetric_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp(min=0).sqrt().sum()
    return (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2.0 * trace_root


def frechet_distance(feat_a: Tensor, feat_b: Tensor) -> Tensor:
    r"""Fréchet distance of the Gaussians fitted to two feature sets (FID in a classifier's features) [method §6].

    :func:`frechet_distance_from_moments` of the sample means and the unbiased sample covariances
    (divisor n − 1, as ``numpy.cov``), all in float64:

    .. math::

        \mathrm{FD} = \|\hat\mu_a - \hat\mu_b\|^2
            + \operatorname{tr}\big(\hat C_a + \hat C_b - 2(\hat C_a \hat C_b)^{1/2}\big).

    A plug-in estimate: biased upwards at finite n, m (about tr C (1/n + 1/m) for one distribution), so
    compare values only at equal sample sizes and report the real-versus-real value at those sizes as the
    floor. Invariant to a common permutation or rotation of the features.

    Args:
        feat_a: (n, k) features, n >= 2.
        feat_b: (m, k) features, m >= 2.

    Returns:
        Scalar float64 tensor.
    """
    _check_features(feat_a, feat_b, ("feat_a", "feat_b"), 2)
    a, b = feat_a.to(torch.float64), feat_b.to(torch.float64)
    return frechet_distance_from_moments(a.mean(0), torch.cov(a.T).reshape(a.shape[1], -1),
                                         b.mean(0), torch.cov(b.T).reshape(b.shape[1], -1))


def _kernel_sum(a: Tensor, b: Tensor) -> Tensor:
    """Σ_{i,j} (a_i·b_j / k + 1)³ in row blocks of at most KERNEL_BLOCK entries (float64 a (n, k), b (m, k))."""
    rows = max(1, KERNEL_BLOCK // b.shape[0])
    k = a.shape[1]
    return sum((((blk @ b.T) / k + 1.0) ** 3).sum() for blk in a.split(rows))


def _kid(a: Tensor, b: Tensor) -> Tensor:
    n, m, k = a.shape[0], b.shape[0], a.shape[1]
    diag_a = ((a.square().sum(1) / k + 1.0) ** 3).sum()
    diag_b = ((b.square().sum(1) / k + 1.0) ** 3).sum()
    within_a = (_kernel_sum(a, a) - diag_a) / (n * (n - 1))
    within_b = (_kernel_sum(b, b) - diag_b) / (m * (m - 1))
    return within_a + within_b - 2.0 * _kernel_sum(a, b) / (n * m)


def kernel_distance(
    feat_a: Tensor, feat_b: Tensor, *, n_subsets: int | None = None, subset_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Kernel distance (KID in a classifier's features): unbiased MMD² with a cubic polynomial kernel [method §6].

    With :math:`\kappa(u, v) = (u \cdot v / k + 1)^3` on k features (Bińkowski et al. 2018),

    .. math::

        \mathrm{KD} = \frac{1}{n(n-1)}\sum_{i \ne i'}\kappa(a_i, a_{i'})
            + \frac{1}{m(m-1)}\sum_{j \ne j'}\kappa(b_j, b_{j'}) - \frac{2}{nm}\sum_{i,j}\kappa(a_i, b_j),

    an unbiased estimate of MMD²_κ: for one distribution its mean over draws is 0 (single values can be
    negative), so unlike the Fréchet distance it needs no floor at equal sizes. Computed in float64 in
    blocks of at most 2**22 kernel entries.

    With ``n_subsets`` and ``subset_size`` (both or neither), the mean of KD over ``n_subsets`` pairs of
    subsets of ``subset_size`` rows drawn without replacement from each set by ``generator`` (the usual KID
    protocol, e.g. 100 subsets of 1000: O(subset_size²) memory and time per subset); still unbiased.

    Args:
        feat_a: (n, k) features, n >= 2.
        feat_b: (m, k) features, m >= 2.
        n_subsets: number of subset pairs, or None for the full sets.
        subset_size: rows per subset, 2 <= subset_size <= min(n, m).
        generator: a torch.Generator (CPU), required with subsets.

    Returns:
        Scalar float64 tensor.
    """
    _check_features(feat_a, feat_b, ("feat_a", "feat_b"), 2)
    a, b = feat_a.to(torch.float64), feat_b.to(torch.float64)
    if n_subsets is None and subset_size is None:
        return _kid(a, b)
    if n_subsets is None or subset_size is None:
        raise ValueError("give both n_subsets and subset_size (e.g. 100 and 1000), or neither for the full sets")
    check_positive_int("n_subsets", n_subsets)
    check_positive_int("subset_size", subset_size)
    if not 2 <= subset_size <= min(a.shape[0], b.shape[0]):
        raise ValueError(
            f"subset_size must lie in [2, min(n, m)] = [2, {min(a.shape[0], b.shape[0])}], got {subset_size}"
        )
    if not isinstance(generator, torch.Generator):
        raise ValueError("subsets are drawn at random: pass generator=torch.Generator().manual_seed(seed)")
    values = []
    for _ in range(n_subsets):
        ia = torch.randperm(a.shape[0], generator=generator)[:subset_size].to(a.device)
        ib = torch.randperm(b.shape[0], generator=generator)[:subset_size].to(b.device)
        values.append(_kid(a[ia], b[ib]))
    return torch.stack(values).mean()
