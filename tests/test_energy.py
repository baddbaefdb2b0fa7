"""cmmd.energy against autograd of the brute-force energy."""

import pytest
import torch

from cmmd.energy import mmd2, mmd2_grad
from tests.conftest import brute_mmd2


def autograd_reference(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.clone().requires_grad_(True)
    value = brute_mmd2(xr, y)
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
