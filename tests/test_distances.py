"""cmmd.distances against the brute-force reference, the U-statistic written out, and exact 1D values.

Statistical tolerances are 5 standard errors, estimated from the draws themselves; seeds are fixed.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cmmd.distances import energy_distance, energy_distances, mmd2_unbiased
from cmmd.energy import brute_force_mmd2

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- energy distance (V-statistic)


def test_energy_distance_is_twice_the_brute_force_mmd2_and_vanishes_on_equal_clouds():
    x = torch.randn(300, 4, generator=gen(0), dtype=F64)
    y = 0.5 + 1.3 * torch.randn(200, 4, generator=gen(1), dtype=F64)
    ed = energy_distance(x, y)
    assert ed.shape == () and float(ed) > 0.1
    # Sums of 10⁵ distances of size ~3 with a cancellation to ~0.3: ~1e-14 relative expected.
    torch.testing.assert_close(ed, 2 * brute_force_mmd2(x, y), rtol=1e-12, atol=0)
    torch.testing.assert_close(energy_distance(x, y, max_block=97), ed, rtol=1e-12, atol=0)
    assert float(energy_distance(x, x)) == 0.0
    assert abs(float(energy_distance(x, x[torch.randperm(300, generator=gen(2))]))) < 1e-12
    with pytest.raises(ValueError, match="feature dimension"):
        energy_distance(x, y[:, :3])


def test_batched_energy_distances_equal_the_unbatched_ones():
    a = torch.randn(5, 60, 3, generator=gen(3), dtype=F64)
    b = 0.3 + torch.randn(5, 45, 3, generator=gen(4), dtype=F64) * torch.linspace(0.5, 2, 5, dtype=F64)[:, None, None]
    batched = energy_distances(a, b, max_block=1 << 10)
    assert batched.shape == (5,)
    one_by_one = torch.stack([energy_distance(a[i], b[i], max_block=1 << 10) for i in range(5)])
    assert torch.equal(batched, one_by_one)  # the same operations, set by set
    torch.testing.assert_close(batched, 2 * brute_force_mmd2(a, b), rtol=1e-12, atol=0)
    # Pairing a[i] with b[i] (not with another b[j]): the sets differ in spread, so a shuffle shows.
    assert not torch.allclose(energy_distances(a, b.flip(0)), batched, rtol=1e-3)
    with pytest.raises(ValueError, match="one B"):
        energy_distances(a, b[:4])
    with pytest.raises(ValueError, match="shapes"):
        energy_distances(a[0], b[0])


# ----------------------------------------------------------------------------- brute-force reference


def test_brute_force_mmd2_equals_the_double_sums_and_is_batched():
    x = torch.randn(2, 6, 3, generator=gen(5), dtype=F64)
    y = torch.randn(2, 4, 3, generator=gen(6), dtype=F64) + 0.5
    y[0, 0] = x[0, 2]  # a coincident pair
    values = brute_force_mmd2(x, y)
    assert values.shape == (2,) and values.dtype == F64
    for r in range(2):
        xs, ys = x[r].tolist(), y[r].tolist()

        def total(u, v):
            return sum(math.dist(p, q) for p, q in itertools.product(u, v))

        n, m = len(xs), len(ys)
        expected = total(xs, ys) / (n * m) - total(xs, xs) / (2 * n * n) - total(ys, ys) / (2 * m * m)
        assert float(values[r]) == pytest.approx(expected, rel=1e-13)
        assert float(brute_force_mmd2(x[r], y[r])) == pytest.approx(expected, rel=1e-13)
    # float32 input is computed in float64.
    assert brute_force_mmd2(x.float(), y.float()).dtype == F64
    with pytest.raises(ValueError, match="batch shape"):
        brute_force_mmd2(x, y[0])


# ----------------------------------------------------------------------------- unbiased MMD² (U-statistic)


def test_mmd2_unbiased_equals_the_u_statistic_written_out():
    x = torch.randn(7, 2, generator=gen(7), dtype=F64)
    y = torch.randn(5, 2, generator=gen(8), dtype=F64) * 0.8 + 0.2
    xs, ys = x.tolist(), y.tolist()
    n, m = len(xs), len(ys)
    cross = sum(math.dist(p, q) for p in xs for q in ys) / (n * m)
    within_x = sum(math.dist(xs[i], xs[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_y = sum(math.dist(ys[k], ys[l]) for k in range(m) for l in range(m) if k != l) / (m * (m - 1))
    expected = cross - 0.5 * within_x - 0.5 * within_y
    scale = max(cross, within_x, within_y)
    # float64 round-off on sums of ≤ 49 distances: ~1e-15·scale; 1e-12·scale leaves a margin.
    assert abs(float(mmd2_unbiased(x, y)) - expected) <= 1e-12 * scale
    # It differs from the V-statistic by the diagonal terms, here by far more than round-off.
    assert abs(float(brute_force_mmd2(x, y)) - expected) > 1e-3 * scale
    with pytest.raises(ValueError, match="at least 2"):
        mmd2_unbiased(x[:1], y)


def _gaussian_mean_abs(mu: float, sd: float) -> float:
    """E|Z| for Z ~ N(mu, sd²)."""
    return sd * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sd * sd)) + mu * math.erf(mu / (sd * math.sqrt(2)))


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_mmd2_unbiased_is_unbiased_and_the_v_statistic_is_not(shift):
    """x ~ N(0, 1), y ~ N(shift, 1) in 1D: MMD² = E|X − Y| − E|X − X'| with E|X − X'| = 2/√π and
    E|X − Y| = E|N(shift, 2)|. Over R independent draws of N = M = 40 points the mean U-statistic is within
    5 SE of it; the V-statistic's mean is off by its bias (E|X − X'|/N + E|Y − Y'|/M)/2 = 2/(√π N)."""
    n = m = 40
    reps = 1500
    g = gen(10 + int(10 * shift))
    exact = _gaussian_mean_abs(shift, math.sqrt(2)) - 2 / math.sqrt(math.pi)
    u_values, v_values = [], []
    for _ in range(reps):
        x = torch.randn(n, 1, generator=g, dtype=F64)
        y = shift + torch.randn(m, 1, generator=g, dtype=F64)
        u_values.append(float(mmd2_unbiased(x, y)))
        v_values.append(float(brute_force_mmd2(x, y)))
    u, v = torch.tensor(u_values, dtype=F64), torch.tensor(v_values, dtype=F64)
    se_u, se_v = float(u.std()) / math.sqrt(reps), float(v.std()) / math.sqrt(reps)
    assert abs(float(u.mean()) - exact) < 5 * se_u
    bias = 2 / (math.sqrt(math.pi) * n)
    assert abs(float(v.mean()) - (exact + bias)) < 5 * se_v
    assert bias > 10 * se_u  # the test tells the two estimators apart
    if shift == 0.0:
        assert 0.3 < float((u < 0).double().mean()) < 0.7  # it scatters around 0, negative about half the time
