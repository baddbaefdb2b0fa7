r"""Sliced MMD with the negative distance kernel: exact 1D formulas by sorting, and slicing (METHOD.md §1).

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

DEFAULT_BLOCK = 1 << 23  # entries (projections × points) sorted at once


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


def _grad_1d_sorted(s: torch.Tensor, is_x: torch.Tensor, n: int, m: int) -> torch.Tensor:
    r"""1D gradient at every sorted position j of the concatenation (values at target positions unused).

    Without ties, with r = #particles before j and j − r = #targets before j:
    ∂F/∂x = (2(j − r) − M)/(NM) − (2r − N + 1)/N² = (2Nj − 2(N+M)r − M)/(N²M).
    Tied positions (rare for continuous data, common in float32 at large N) get the values of
    :func:`_tie_values` instead.
    """
    is_x_f = is_x.to(s.dtype)
    x_before = is_x_f.cumsum(1).sub_(is_x_f)  # exclusive count of particles before each position
    ties = _tie_values(s, x_before, n, m)
    j = torch.arange(s.shape[1], device=s.device, dtype=s.dtype)
    grad = x_before.mul_(-2.0 * (n + m)).add_(2.0 * n * j - m).div_(n * n * m)
    if ties is not None:
        grad.view(-1)[ties[0]] = ties[1]
    return grad


def _tie_values(
    s: torch.Tensor, x_before: torch.Tensor, n: int, m: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""Flat positions of the members of tie groups of the sorted rows ``s`` (P, L) and their gradients.

    With a tie group occupying sorted positions [a, b), the counts below and at-or-below are taken at
    a and b, so that a tie contributes sign(0) = 0 (the subgradient autograd of |·| picks):
    (t_a + t_b − M)/(NM) − (x_a + x_b − N)/N², with x_k, t_k the particles and targets before k.
    Only the K tied positions are touched: O(PL) to find them, O(K log K) for the rest.
    Returns ``None`` without ties.
    """
    length = s.shape[1]
    left_row, left_col = (s[:, 1:] == s[:, :-1]).nonzero(as_tuple=True)
    if left_row.numel() == 0:
        return None
    left = left_row * length + left_col
    members = torch.cat([left, left + 1]).unique()  # flat positions inside tie groups, ascending
    flat_s = s.reshape(-1)
    row_start = torch.div(members, length, rounding_mode="floor") * length
    starts = torch.ones_like(members, dtype=torch.bool)
    starts[1:] = (row_start[1:] != row_start[:-1]) | (flat_s[members[1:]] != flat_s[members[:-1]])
    ends = torch.ones_like(starts)
    ends[:-1] = starts[1:]
    first = torch.where(starts, members, 0).cummax(0).values  # flat position a of the group
    past_last = torch.where(ends, members + 1, s.numel()).flip(0).cummin(0).values.flip(0)  # b
    flat_x = x_before.reshape(-1)
    x_lo = flat_x[first]
    at_row_end = past_last - row_start == length
    x_hi = torch.where(at_row_end, float(n), flat_x[past_last.clamp_max(s.numel() - 1)])
    t_lo = (first - row_start).to(s.dtype) - x_lo
    t_hi = (past_last - row_start).to(s.dtype) - x_hi
    return members, (t_lo + t_hi - m) / (n * m) - (x_lo + x_hi - n) / (n * n)


def mmd2_grad_1d(xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
    r"""Gradient of the 1D MMD² with k(s, t) = -|s - t| with respect to the particles, batched over rows.

    .. math::

        \partial_{x_i} F_1 = \frac{\#\{k: p_k < x_i\} - \#\{k: p_k > x_i\}}{NM}
            - \frac{\#\{j: x_j < x_i\} - \#\{j: x_j > x_i\}}{N^2},

    which without ties is (2·#{p_k ≤ x_i} − M)/(NM) − (2 r_i − N + 1)/N² (METHOD.md §1). One sort of
    each row of [xp, yp] gives both counts.

    Args:
        xp: projected particles, shape (P, N).
        yp: projected targets, shape (P, M).

    Returns:
        Tensor (P, N): row p is the gradient of MMD²(xp[p], yp[p]) with respect to xp[p].
    """
    _check_projected(xp, yp)
    return _grad_1d_joint(torch.cat([xp, yp], 1), xp.shape[1])


def _grad_1d_joint(z: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`mmd2_grad_1d` for z = [xp, yp] of shape (P, N+M), the first n columns being the particles."""
    s, perm = z.sort(dim=1)
    grad_sorted = _grad_1d_sorted(s, perm < n, n, z.shape[1] - n)
    return torch.empty_like(grad_sorted).scatter_(1, perm, grad_sorted)[:, :n]


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
    s, perm = z.sort(dim=1)
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


def _projection_blocks(n_projections: int, length: int, max_block: int):
    rows = max(1, max_block // length)
    for start in range(0, n_projections, rows):
        yield slice(start, min(start + rows, n_projections))


def _directions_for(x: torch.Tensor, n_projections: int, generator: torch.Generator | None) -> torch.Tensor:
    check_positive_int("n_projections", n_projections)
    return random_directions(
        n_projections, x.shape[1], generator=generator, dtype=x.dtype, device=x.device
    )


def sliced_mmd2_grad(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int,
    *,
    generator: torch.Generator | None = None,
    max_block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    r"""Unbiased sliced estimate of :func:`cmmd.energy.mmd2_grad` (METHOD.md §1).

    .. math::

        \nabla_{x_i} \mathrm{MMD}^2 \approx \frac{c_d}{P} \sum_{p=1}^P
            \partial_i F_1(\langle \xi_p, x\rangle; \langle \xi_p, y\rangle)\, \xi_p,
        \qquad \xi_p \sim \mathcal U(S^{d-1}).

    Cost O(P(N+M)(d + log(N+M))): a projection and a back-projection matrix product and one batched
    sort, in blocks of at most ``max_block`` sorted entries. All P directions are drawn at once, so the
    result does not depend on ``max_block``. Relative error of one estimate ≈ 1.4·√(d/P).

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
    xi = _directions_for(x, n_projections, generator)
    n = x.shape[0]
    points = torch.cat([x, y])
    grad = torch.zeros_like(x)
    for rows in _projection_blocks(n_projections, points.shape[0], max_block):
        grad.addmm_(_grad_1d_joint(xi[rows] @ points.T, n).T, xi[rows])
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

    Returns:
        Scalar tensor (already multiplied by c_d).
    """
    check_pair(x, y)
    xi = _directions_for(x, n_projections, generator)
    n = x.shape[0]
    points = torch.cat([x, y])
    total = x.new_zeros(())
    for rows in _projection_blocks(n_projections, points.shape[0], max_block):
        total = total + _mmd2_1d_joint(xi[rows] @ points.T, n).sum()
    return total * (sliced_factor(x.shape[1]) / n_projections)
