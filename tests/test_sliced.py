"""cmmd.sliced: 1D sorting formulas against autograd, the slicing constant, unbiasedness and error rate."""

import math

import numpy as np
import pytest
import torch

from cmmd._sort import sort_rows
from cmmd.energy import brute_force_mmd2, mmd2, mmd2_grad
from cmmd.sliced import mmd2_1d, mmd2_grad_1d, sliced_factor, sliced_mmd2, sliced_mmd2_grad


@pytest.mark.parametrize("n, m", [(30, 30), (17, 41), (50, 9)])
@pytest.mark.parametrize("ties", [False, True])
def test_1d_gradient_and_value_match_autograd(gen, n, m, ties):
    p = 6
    if ties:  # few distinct values: ties among particles, among targets and across both
        xp = torch.randint(0, 6, (p, n), generator=gen).double()
        yp = torch.randint(0, 6, (p, m), generator=gen).double()
    else:
        xp = torch.randn(p, n, generator=gen, dtype=torch.float64)
        yp = torch.randn(p, m, generator=gen, dtype=torch.float64) + 0.3
    xr = xp.clone().requires_grad_(True)
    reference = brute_force_mmd2(xr[..., None], yp[..., None])  # row-wise 1D MMD², (P,)
    (grad,) = torch.autograd.grad(reference.sum(), xr)
    assert torch.allclose(mmd2_grad_1d(xp, yp), grad, rtol=0, atol=1e-10)
    assert torch.allclose(mmd2_1d(xp, yp), reference.detach(), rtol=0, atol=1e-10)


def autograd_1d(xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
    xr = xp.double().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(brute_force_mmd2(xr[..., None], yp[..., None]).sum(), xr)
    return grad


def test_fast_float32_sort_path_matches_autograd_with_every_kind_of_tie(gen):
    """float32 on the CPU sorts packed int64 keys (cmmd._sort); ties among targets, among particles, across
    both, and -0.0 against +0.0 must all follow the sign(0) = 0 rule."""
    z = torch.randn(4, 700, generator=gen)
    z[:, 500:] = torch.randint(-2, 3, (4, 200), generator=gen).float()  # many ties among targets
    z[:, 480:500] = 1.0  # particles tied with each other and with targets
    z[0, :3], z[1, 600:603] = -0.0, 0.0
    for n in (500, 300):
        expected = autograd_1d(z[:, :n], z[:, n:])
        # float32 counts are exact; the final division rounds at ~6e-8 relative of values ≤ 2/N.
        assert torch.allclose(mmd2_grad_1d(z[:, :n], z[:, n:]).double(), expected, rtol=0, atol=1e-9)


def test_float32_rounding_collisions_in_large_clouds(gen):
    z = (torch.randn(2, 5000, generator=gen, dtype=torch.float64) * 3).float()
    z[:, 2500:3500] = torch.randint(0, 4, (2, 1000), generator=gen).float()
    assert bool((z.sort(dim=1).values.diff(dim=1) == 0).any())  # the case is really exercised
    expected = autograd_1d(z[:, :2500], z[:, 2500:])
    assert torch.allclose(mmd2_grad_1d(z[:, :2500], z[:, 2500:]).double(), expected, rtol=0, atol=1e-9)


def test_sort_rows_sorts_and_returns_a_permutation(gen):
    for dtype in (torch.float32, torch.float64):
        z = torch.randn(5, 300, generator=gen, dtype=dtype)
        z[:, :50] = 0.0
        values, perm = sort_rows(z)
        assert torch.equal(values, z.sort(dim=1).values)
        assert torch.equal(z.gather(1, perm), values)
        assert torch.equal(perm.sort(dim=1).values, torch.arange(300).expand(5, -1))


def product_formula(d: int) -> float:
    """c_d from c_1 = 1, c_2 = π/2 and c_{k+2} = c_k (k+1)/k (Γ(z+1) = zΓ(z))."""
    c = 1.0 if d % 2 else math.pi / 2
    for k in range(2 - d % 2, d, 2):
        c *= (k + 1) / k
    return c


def test_sliced_factor_equals_product_formula():
    for d in range(1, 2001):
        assert sliced_factor(d) == pytest.approx(product_formula(d), rel=1e-12, abs=0)
    assert sliced_factor(784) == pytest.approx(35.0816, abs=5e-5)
    assert sliced_factor(3072) == pytest.approx(69.4601, abs=5e-5)
    assert sliced_factor(10_000) == pytest.approx(math.sqrt(math.pi * 10_000 / 2), rel=1e-4)


def test_sliced_gradient_is_unbiased(gen):
    """Mean of K independent estimates → exact gradient; deviation judged by the estimates' own spread."""
    x = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(40, 5, generator=gen, dtype=torch.float64) * 0.5 + 0.5
    exact = mmd2_grad(x, y)
    k = 400
    estimates = torch.stack([sliced_mmd2_grad(x, y, 50, generator=gen) for _ in range(k)])
    mean = estimates.mean(0)
    # E||mean − g||² = tr(Σ)/K with tr(Σ) estimated by the sample spread; the ratio is ≈ 1 (χ²/dof-like).
    spread = ((estimates - mean) ** 2).sum((1, 2)).mean() * k / (k - 1)
    ratio = float(((mean - exact) ** 2).sum() / (spread / k))
    assert ratio < 3.0
    # A biased constant would show: c_{d+1}/c_d ≈ 1.1 gives a bias far above the standard error.
    assert float((mean - exact).norm() / exact.norm()) < 0.05


def relative_errors(x, y, exact, p, repeats, gen):
    errs = [float((sliced_mmd2_grad(x, y, p, generator=gen) - exact).norm() / exact.norm()) for _ in range(repeats)]
    return math.sqrt(sum(e * e for e in errs) / repeats)


@pytest.mark.slow
def test_relative_error_falls_like_sqrt_d_over_p(gen):
    ps = [10, 32, 100, 316, 1000, 3162, 10000]
    prefactors = {}
    for d in (10, 80):
        x = torch.randn(150, d, generator=gen, dtype=torch.float64)
        y = torch.randn(150, d, generator=gen, dtype=torch.float64) * 0.8 + 0.3
        exact = mmd2_grad(x, y)
        errors = [relative_errors(x, y, exact, p, 16 if p < 3000 else 4, gen) for p in ps]
        slope = np.polyfit(np.log(ps), np.log(errors), 1)[0]
        assert abs(slope + 0.5) <= 0.1, (d, slope, errors)
        prefactors[d] = np.mean([e / math.sqrt(d / p) for e, p in zip(errors, ps)])
    # The error is ≈ C·sqrt(d/P) with one constant C for every d ([method §7]: C ≈ 1.4).
    assert 0.5 < prefactors[10] < 3 and 0.5 < prefactors[80] < 3
    assert 1 / 1.5 < prefactors[10] / prefactors[80] < 1.5


def test_sliced_mmd2_matches_exact_within_statistical_error(gen):
    for d in (1, 3, 50):
        x = torch.randn(60, d, generator=gen, dtype=torch.float64)
        y = torch.randn(70, d, generator=gen, dtype=torch.float64) * 0.8 + 0.2
        exact = float(mmd2(x, y))
        estimates = torch.stack([sliced_mmd2(x, y, 20, generator=gen) for _ in range(200)])
        stderr = float(estimates.std() / math.sqrt(len(estimates)))
        assert abs(float(estimates.mean()) - exact) < 4 * stderr + 1e-12, (d, exact, float(estimates.mean()))


def test_in_one_dimension_slicing_is_exact(gen):
    x = torch.randn(40, 1, generator=gen, dtype=torch.float64)
    y = torch.randn(30, 1, generator=gen, dtype=torch.float64)
    assert torch.allclose(sliced_mmd2_grad(x, y, 3, generator=gen), mmd2_grad(x, y), rtol=0, atol=1e-12)
    assert float(sliced_mmd2(x, y, 3, generator=gen)) == pytest.approx(float(mmd2(x, y)), abs=1e-12)


def test_same_seed_same_numbers_and_independent_of_block_size():
    x = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randn(90, 8, generator=torch.Generator().manual_seed(1))
    a = sliced_mmd2_grad(x, y, 64, generator=torch.Generator().manual_seed(7))
    b = sliced_mmd2_grad(x, y, 64, generator=torch.Generator().manual_seed(7), max_block=500)
    c = sliced_mmd2_grad(x, y, 64, generator=torch.Generator().manual_seed(8))
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)  # same directions; only the summation order differs
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("p", [0, -3, 2.5, True])
def test_bad_number_of_projections(p):
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_mmd2_grad(x, x + 1, p)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_mmd2(x, x + 1, p)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="feature dimension"):
        sliced_mmd2_grad(torch.zeros(3, 2), torch.zeros(3, 4), 5)
    with pytest.raises(ValueError, match="y contains NaN"):
        sliced_mmd2_grad(torch.zeros(3, 2), torch.tensor([[float("nan"), 0.0]]), 5)
    with pytest.raises(ValueError, match="x is empty"):
        sliced_mmd2(torch.zeros(0, 2), torch.zeros(3, 2), 5)
    with pytest.raises(ValueError, match="floating dtype"):
        sliced_mmd2_grad(torch.zeros(3, 2, dtype=torch.int32), torch.zeros(3, 2), 5)
    with pytest.raises(ValueError, match="xp and yp"):
        mmd2_grad_1d(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="d must be"):
        sliced_factor(0)
