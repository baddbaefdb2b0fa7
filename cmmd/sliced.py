r"""Sliced MMD with the negative distance kernel: exact 1D formulas by sorting, and slicing.

The slicing constant c_d and the sorting gradient are explained in the book's page "Method and settings",
book/method.md, §1.

Slicing theorem (Hertrich et al., "Generative sliced MMD flows with Riesz kernels", ICLR 2024):

.. math::

    \mathrm{MMD}_K^2(\mu, \nu) = c_d \, \mathbb{E}_{\xi \sim \mathcal U(S^{d-1})}
        \mathrm{MMD}_k^2(P_{\xi\#}\mu, P_{\xi\#}\nu), \qquad
    c_d = \frac{\sqrt{\pi}\,\Gamma(\frac{d+1}{2})}{\Gamma(\frac d2)},

with K(x, y) = -||x - y|| on R^d and k(s, t) = -|s - t| on R. In 1D everything follows from one sort
of the concatenated projections: the particle ranks and the number of targets below each particle.
"""

from __future__ import annotations

import math

import torch

from cmmd._checks import check_floating, check_pair, check_positive_int
from cmmd._sort import sort_rows, sorted_keys

DEFAULT_BLOCK = 1 << 23  # entries (projections × points) sorted at once
#: P·d direction entries drawn in one call at most (when ``max_block`` is smaller); beyond that each block of
#: projections draws its own directions, so that memory follows ``max_block`` for any P.
DIRECTIONS_AT_ONCE = 1 << 24


# Stirling series of ln Γ(z): (z − ½) ln z − z + ½ ln 2π + Σ_k B_{2k} / (2k(2k − 1) z^{2k−1}).
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188)


def _log_gamma_ratio(z: float) -> float:
    """ln Γ(z + ½) − ln Γ(z) in float64.

    For small z, ``math.lgamma`` twice. For z ≥ 20 the two lgamma values (each ~z ln z) would cancel and
    leave ~1e-12 relative error at d = 2000, so the Stirling series is differenced term by term instead:
    z·log1p(1/(2z)) + ½ ln z − ½ + Σ_k b_k ((z + ½)^{1−2k} − z^{1−2k}), accurate to ~1e-14.
    """
    if z < 20:
        return math.lgamma(z + 0.5) - math.lgamma(z)
    ratio = z * math.log1p(0.5 / z) + 0.5 * math.log(z) - 0.5
    for k, b in enumerate(_STIRLING):
        power = 2 * k + 1
        ratio += b * ((z + 0.5) ** -power - z**-power)
    return ratio


def sliced_factor(d: int) -> float:
    r"""The slicing constant c_d = √π Γ((d+1)/2) / Γ(d/2) in float64, from log-gamma differences.

    c_1 = 1, c_2 = π/2, c_784 ≈ 35.0816, c_3072 ≈ 69.4601, and c_d ≈ √(πd/2) for large d.
    """
    check_positive_int("d", d)
    return math.exp(0.5 * math.log(math.pi) + _log_gamma_ratio(d / 2))


def _check_projected(xp: torch.Tensor, yp: torch.Tensor) -> None:
    check_floating("xp", xp)
    check_floating("yp", yp)
    if xp.ndim != 2 or yp.ndim != 2 or xp.shape[0] != yp.shape[0]:
        raise ValueError(
            f"xp and yp must have shapes (P, N) and (P, M) with the same number P of projections, "
            f"got xp: {tuple(xp.shape)} and yp: {tuple(yp.shape)}"
        )
    if xp.dtype != yp.dtype or xp.device != yp.device:
        raise ValueError(f"xp ({xp.dtype}, {xp.device}) and yp ({yp.dtype}, {yp.device}) must match")


def _grad_1d_sorted(is_x: torch.Tensor, keys: torch.Tensor, n: int, m: int, dtype: torch.dtype) -> torch.Tensor:
    r"""1D gradient at every sorted position j (values at target positions unused).

    ``keys`` (P, L) are sorted and equal exactly where the values tie; ``is_x`` marks the particles.
    Without ties, with r = #particles before j and j − r = #targets before j:
    ∂F/∂x = (2(j − r) − M)/(NM) − (2r − N + 1)/N² = (2Nj − 2(N+M)r − M)/(N²M).
    A particle tied with a neighbour (rare for continuous data; float32 rounding makes a few) takes the
    counts at the ends [a, b) of its tie group instead, so that a tie contributes sign(0) = 0, the
    subgradient autograd of |·| picks: (t_a + t_b − M)/(NM) − (x_a + x_b − N)/N², with x_k, t_k the
    particles and targets before k. Ties among targets alone change no particle's counts and are skipped;
    tie groups are found by binary search, so the cost is O(PL) plus O(K log L) for K tied particles.
    """
    length = keys.shape[1]
    is_x_f = is_x.to(dtype)
    x_before = is_x_f.cumsum(1).sub_(is_x_f)  # particles before each sorted position
    j = torch.arange(length, dtype=dtype, device=keys.device)
    grad = x_before.mul(-2.0 * (n + m)).add_(2.0 * n * j - m).div_(n * n * m)
    equal = keys[:, 1:] == keys[:, :-1]
    tied = torch.zeros_like(is_x)
    tied[:, 1:] = equal
    tied[:, :-1] |= equal
    rows, cols = tied.logical_and_(is_x).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return grad
    flat_keys, base = keys.view(-1), rows * length
    value = flat_keys[base + cols]
    start = _first_at_least(flat_keys, base, base + cols, value, strict=False) - base
    stop = _first_at_least(flat_keys, base + cols, base + length, value, strict=True) - base
    x_lo = x_before[rows, start]
    x_hi = torch.where(stop == length, float(n), x_before[rows, stop.clamp_max(length - 1)])
    t_lo, t_hi = start.to(dtype) - x_lo, stop.to(dtype) - x_hi
    grad[rows, cols] = (t_lo + t_hi - m) / (n * m) - (x_lo + x_hi - n) / (n * n)
    return grad


def _first_at_least(flat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, value: torch.Tensor, *, strict: bool):
    """Vectorised binary search: for each query, the first index i in [lo, hi) of the sorted run with
    flat[i] >= value (> value if ``strict``), or hi if none."""
    lo, hi = lo.clone(), hi.clone()
    while bool((lo < hi).any()):
        mid = (lo + hi) // 2
        probe = flat[mid.clamp_max(flat.numel() - 1)]
        right = (probe > value) if strict else (probe >= value)
        active = lo < hi
        hi = torch.where(active & right, mid, hi)
        lo = torch.where(active & ~right, mid + 1, lo)
    return lo


def mmd2_grad_1d(xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
    r"""Gradient of the 1D MMD² with k(s, t) = -|s - t| with respect to the particles, batched over rows.

    .. math::

        \partial_{x_i} F_1 = \frac{\#\{k: p_k < x_i\} - \#\{k: p_k > x_i\}}{NM}
            - \frac{\#\{j: x_j < x_i\} - \#\{j: x_j > x_i\}}{N^2},

    which without ties is (2·#{p_k ≤ x_i} − M)/(NM) − (2 r_i − N + 1)/N² [method §1]. One sort of
    each row of [xp, yp] gives both counts.

    Args:
        xp: projected particles, shape (P, N).
        yp: projected targets, shape (P, M).

    Returns:
        Tensor (P, N): row p is the gradient of MMD²(xp[p], yp[p]) with respect to xp[p].
    """
    _check_projected(xp, yp)
    return mmd2_grad_1d_joint(torch.cat([xp, yp], 1), xp.shape[1])


def mmd2_grad_1d_joint(z: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`mmd2_grad_1d` for z = [xp, yp] of shape (P, N+M) whose first ``n`` columns are the particles;
    (P, n). One sort of each row (:func:`cmmd._sort.sorted_keys`); no input checks (internal hot path)."""
    perm, keys = sorted_keys(z)
    grad_sorted = _grad_1d_sorted(perm < n, keys, n, z.shape[1] - n, z.dtype)
    return torch.empty_like(grad_sorted, dtype=z.dtype).scatter_(1, perm, grad_sorted)[:, :n]


def mmd2_1d(xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
    r"""Exact 1D MMD² with k(s, t) = -|s - t| of each row pair, from one sort.

    In 1D, MMD² = ½ energy distance = ∫ (F_x(t) − F_y(t))² dt with the empirical CDFs F_x, F_y, a sum
    of positive terms over the gaps between consecutive sorted values.

    Args:
        xp: (P, N); yp: (P, M).

    Returns:
        Tensor (P,).
    """
    _check_projected(xp, yp)
    return _mmd2_1d_joint(torch.cat([xp, yp], 1), xp.shape[1])


def _mmd2_1d_joint(z: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`mmd2_1d` for z = [xp, yp] of shape (P, N+M), the first n columns being the particles."""
    m = z.shape[1] - n
    s, perm = sort_rows(z)
    is_x = (perm < n).to(s.dtype)
    cdf_gap = is_x.cumsum(1) / n - (1 - is_x).cumsum(1) / m
    return (cdf_gap[:, :-1].square() * s.diff(dim=1)).sum(1)


def random_directions(
    n: int,
    d: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """n directions drawn uniformly from the unit sphere S^{d-1} (normalised Gaussians); shape (n, d)."""
    check_positive_int("n", n)
    check_positive_int("d", d)
    xi = torch.randn(n, d, generator=generator, dtype=dtype, device=device)
    return xi / xi.norm(dim=1, keepdim=True)


def block_rows(n_projections: int, dim: int, length: int, max_block: int) -> tuple[int, bool]:
    """How projections are processed: (rows per block, whether all P directions are drawn in one call).

    Each block sorts ``rows × length`` values, at most ``max_block`` (at least one row). All P·``dim``
    direction entries are drawn at once while they number at most max(``max_block``, :data:`DIRECTIONS_AT_ONCE`),
    which keeps the random stream, and so the result, independent of ``max_block``; a larger P draws its
    directions block by block (then ``rows × max(length, dim)`` <= ``max_block``), so that memory stays bounded
    whatever P is, at the price of a stream that depends on ``max_block``.
    """
    check_positive_int("n_projections", n_projections)
    check_positive_int("max_block", max_block)
    at_once = n_projections * dim <= max(max_block, DIRECTIONS_AT_ONCE)
    return max(1, max_block // (length if at_once else max(length, dim))), at_once


def _direction_blocks(
    x: torch.Tensor, n_projections: int, length: int, max_block: int, generator: torch.Generator | None
):
    """Yield the directions (P_b, d) of each block of projections, as :func:`block_rows` plans them."""
    dim = x.shape[1]
    rows, at_once = block_rows(n_projections, dim, length, max_block)
    options = dict(generator=generator, dtype=x.dtype, device=x.device)
    xi = random_directions(n_projections, dim, **options) if at_once else None
    for start in range(0, n_projections, rows):
        count = min(rows, n_projections - start)
        yield xi[start : start + count] if at_once else random_directions(count, dim, **options)


def sliced_mmd2_grad(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int,
    *,
    generator: torch.Generator | None = None,
    max_block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    r"""Unbiased sliced estimate of :func:`cmmd.energy.mmd2_grad` [method §1].

    .. math::

        \nabla_{x_i} \mathrm{MMD}^2 \approx \frac{c_d}{P} \sum_{p=1}^P
            \partial_i F_1(\langle \xi_p, x\rangle; \langle \xi_p, y\rangle)\, \xi_p,
        \qquad \xi_p \sim \mathcal U(S^{d-1}).

    Cost O(P(N+M)(d + log(N+M))): a projection and a back-projection matrix product and one batched
    sort, in blocks of at most ``max_block`` sorted entries. The P directions are drawn at once unless
    P·d exceeds max(``max_block``, :data:`DIRECTIONS_AT_ONCE`) (:func:`block_rows`), so that the result does
    not depend on ``max_block`` and huge P still fits in memory. Relative error of one estimate ≈ 1.4·√(d/P).

    Args:
        x: particles (N, d).
        y: targets (M, d).
        n_projections: number P of random directions.
        generator: source of the directions.
        max_block: largest number of projected values sorted at once (memory bound).

    Returns:
        Tensor (N, d).
    """
    check_pair(x, y)
    n = x.shape[0]
    points = torch.cat([x, y])
    grad = torch.zeros_like(x)
    for xi in _direction_blocks(x, n_projections, points.shape[0], max_block, generator):
        grad.addmm_(mmd2_grad_1d_joint(xi @ points.T, n).T, xi)
    return grad * (sliced_factor(x.shape[1]) / n_projections)


def sliced_mmd2(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int,
    *,
    generator: torch.Generator | None = None,
    max_block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    r"""Unbiased sliced estimate of :func:`cmmd.energy.mmd2`: c_d · (1/P) Σ_p MMD²_1D(⟨ξ_p, x⟩, ⟨ξ_p, y⟩).

    Args:
        x: (N, d); y: (M, d); n_projections: P; generator: source of the directions.
        max_block: largest number of projected values sorted at once (memory bound; :func:`block_rows`).

    Returns:
        Scalar tensor (already multiplied by c_d).
    """
    check_pair(x, y)
    n = x.shape[0]
    points = torch.cat([x, y])
    total = x.new_zeros(())
    for xi in _direction_blocks(x, n_projections, points.shape[0], max_block, generator):
        total = total + _mmd2_1d_joint(xi @ points.T, n).sum()
    return total * (sliced_factor(x.shape[1]) / n_projections)
