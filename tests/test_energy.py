"""cmmd.energy against autograd of the brute-force energy."""

import pytest
import torch

from cmmd.energy import DEFAULT_BLOCK, brute_force_mmd2, mmd2, mmd2_grad


def autograd_reference(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.clone().requires_grad_(True)
    value = brute_force_mmd2(xr, y)
    (grad,) = torch.autograd.grad(value, xr)
    return value.detach(), grad


@pytest.mark.parametrize("n, m, d", [(40, 40, 3), (37, 55, 5), (60, 23, 1)])
@pytest.mark.parametrize("max_block", [7, 1 << 20])
def test_mmd2_and_gradient_match_autograd(gen, n, m, d, max_block):
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(m, d, generator=gen, dtype=torch.float64) * 0.7 + 0.4
    value, grad = autograd_reference(x, y)
    assert torch.allclose(mmd2(x, y, max_block=max_block), value, rtol=0, atol=1e-10)
    assert torch.allclose(mmd2_grad(x, y, max_block=max_block), grad, rtol=0, atol=1e-10)


def test_duplicated_points_follow_zero_over_zero_convention(gen):
    """Coincident particles (and particles on targets) contribute 0, as the subgradient autograd picks."""
    base = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    x = torch.cat([base, base[:4]])  # four duplicated particles
    y = torch.cat([base[5:], torch.randn(8, 2, generator=gen, dtype=torch.float64)])  # five targets on particles
    value, grad = autograd_reference(x, y)
    assert torch.allclose(mmd2(x, y), value, rtol=0, atol=1e-10)
    assert torch.allclose(mmd2_grad(x, y), grad, rtol=0, atol=1e-10)


def test_mmd2_is_zero_on_identical_clouds_and_positive_otherwise(gen):
    x = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    assert abs(float(mmd2(x, x))) < 1e-12
    assert float(mmd2(x, x + 0.1)) > 0


def test_float32_agrees_with_float64(gen):
    x = torch.randn(200, 10, generator=gen, dtype=torch.float64)
    y = torch.randn(150, 10, generator=gen, dtype=torch.float64) + 0.5
    g64 = mmd2_grad(x, y)
    g32 = mmd2_grad(x.float(), y.float()).double()
    # Single-precision rounding of distances ~ 1e-7 relative, summed over 350 unit vectors.
    assert (g32 - g64).norm() / g64.norm() < 1e-5
    assert abs(float(mmd2(x.float(), y.float())) - float(mmd2(x, y))) < 1e-5 * float(mmd2(x, y)) + 1e-6


@pytest.mark.parametrize(
    "x, y, name",
    [
        (torch.zeros(3, 2), torch.zeros(3, 3), "feature dimension"),
        (torch.full((3, 2), float("nan")), torch.zeros(3, 2), "x contains NaN"),
        (torch.zeros(3, 2), torch.tensor([[0.0, float("inf")]]), "y contains NaN or inf"),
        (torch.zeros(0, 2), torch.zeros(3, 2), "x is empty"),
        (torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, 2), "x must have a floating dtype"),
        (torch.zeros(3), torch.zeros(3, 1), "x must have shape (N, d)"),
    ],
)
def test_bad_input_names_the_argument(x, y, name):
    for fn in (mmd2, mmd2_grad):
        with pytest.raises(ValueError, match=name.replace("(", r"\(").replace(")", r"\)")):
            fn(x, y)


# ----------------------------------------------------------------------------- float64 accuracy


def _clouds(case: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The issue's clouds, x ~ N(0, I_5) (300 points) and y = 1.5·N(0, I_5) + 0.3 (210 points), transformed."""
    x = torch.randn(300, 5, generator=gen, dtype=torch.float64)
    y = 1.5 * torch.randn(210, 5, generator=gen, dtype=torch.float64) + 0.3
    if case == "issue":
        return x, y
    if case == "both shifted by 1e3":
        return x + 1e3, y + 1e3
    if case == "scaled by 1e-3":
        return 1e-3 * x, 1e-3 * y
    if case == "scaled by 1e3":
        return 1e3 * x, 1e3 * y
    if case == "unequal sizes, 17 particles":
        return x[:17], y
    if case == "targets 1e3 away":  # near pairs far from the common centre in the particle-particle term
        return x, y + 1e3
    if case == "targets 1e-6 from particles":  # close particle-target pairs, far from their centre
        return x, torch.cat([x[:105] + 1e-6 * y[:105], y[105:]])
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "issue",
        "both shifted by 1e3",
        "scaled by 1e-3",
        "scaled by 1e3",
        "unequal sizes, 17 particles",
        "targets 1e3 away",
        "targets 1e-6 from particles",
    ],
)
@pytest.mark.parametrize("max_block", [97, DEFAULT_BLOCK])
def test_float64_matches_brute_force_to_1e12_relative(gen, case, max_block):
    """The exact oracle equals autograd of the brute-force energy to 1e-12 relative in float64.

    Tolerance: float64 has eps = 2.2e-16. Every distance and unit vector is computed to a few eps (the
    expansion only where ||a - b||² > RATIO·(||a||² + ||b||²), direct differences elsewhere), sums of
    N·M terms grow that by a modest factor (blocked/pairwise summation), and the value's cancellation
    E||X-Y|| - ½E||X-X'|| - ½E||Y-Y'|| magnifies relative error by mean distance / MMD² (~10 here):
    about 1e-14 is expected (measured <= 4e-15 value, 1.5e-15 gradient), 1e-12 (~4500 eps) leaves a wide
    margin. The former expansion on all pairs missed it on the last two cases (gradient 1.5e-11 and 3e-6).
    """
    x, y = _clouds(case, gen)
    value, grad = autograd_reference(x, y)
    ours = mmd2(x, y, max_block=max_block)
    ours_grad = mmd2_grad(x, y, max_block=max_block)
    assert abs(float(ours - value)) <= 1e-12 * abs(float(value))
    assert float((ours_grad - grad).norm()) <= 1e-12 * float(grad.norm())


# ----------------------------------------------------------------------------- range


@pytest.mark.parametrize("scale", [1e19, 1e30, 1e-25])
def test_float32_is_homogeneous_at_extreme_scales(gen, scale):
    """mmd2(s·x, s·y) = s·mmd2(x, y) and the gradient is unchanged, in float32 where s² over- or underflows."""
    x = torch.randn(60, 4, generator=gen)
    y = torch.randn(45, 4, generator=gen) * 1.3 + 0.2
    value, grad = mmd2(x, y), mmd2_grad(x, y)
    xs, ys = x * scale, y * scale
    scaled_value = mmd2(xs, ys)
    scaled_grad = mmd2_grad(xs, ys)
    assert torch.isfinite(scaled_value) and torch.isfinite(scaled_grad).all()
    # float32 rounding of the inputs (the product with scale) and of the sums: ~1e-6 relative.
    assert abs(float(scaled_value) / scale - float(value)) <= 1e-5 * float(value)
    assert float((scaled_grad - grad).norm()) <= 1e-5 * float(grad.norm())


def test_value_beyond_the_dtype_range_raises():
    x = torch.full((3, 2), 3e38)
    y = torch.full((2, 2), -3e38)
    with pytest.raises(ValueError, match=r"mmd2 of x and y .* beyond the range of torch.float32.*x.double\(\)"):
        mmd2(x, y)
    # The gradient is 0-homogeneous, so it stays representable.
    assert torch.allclose(mmd2_grad(x, y).double(), mmd2_grad(x.double(), y.double()), rtol=1e-6, atol=0)


def test_max_block_must_be_a_positive_int():
    x = torch.zeros(3, 2)
    for fn in (mmd2, mmd2_grad):
        with pytest.raises(ValueError, match="max_block"):
            fn(x, x, max_block=0)
