"""cmmd.flow: plain flows decrease the MMD², conditional flows never move y."""

import pytest
import torch

from cmmd.energy import mmd2
from cmmd.flow import conditional_mmd_flow, mmd_flow


def test_plain_flow_decreases_mmd2(gen):
    x0 = torch.rand(200, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(250, 2, generator=gen, dtype=torch.float64) * 0.3 + 0.5
    result = mmd_flow(x0, target, 40, step_size=0.5, record_every=1)
    values = torch.tensor(result.mmd2)
    assert values[-1] < values[0] / 10
    assert bool((values[1:] <= values[:-1] + 1e-12).all())  # the exact flow with a small step is monotone
    assert float(mmd2(result.x, target)) == pytest.approx(result.mmd2[-1], abs=1e-12)
    assert torch.equal(x0, x0.clone())  # input untouched


def test_sliced_flow_with_momentum_reaches_the_target(gen):
    x0 = torch.rand(400, 3, generator=gen)
    target = torch.randn(400, 3, generator=gen) * 0.2 + 0.3
    result = mmd_flow(x0, target, 200, momentum=0.5, n_projections=50, generator=gen, record_every=50)
    assert result.mmd2[-1] < result.mmd2[0] / 20
    assert result.steps == [0, 50, 100, 150, 200]


def test_conditional_flow_leaves_y_bit_identical_and_fits_the_joint(gen):
    n = 300
    target_x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    target_y = target_x[:, :1] + 0.1 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    y = target_y.clone()
    x0 = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    result = conditional_mmd_flow(x0, y, target_x, target_y, 1, n_projections=20, generator=gen)
    assert torch.equal(result.y, target_y)  # one step: every y entry bit-identical
    result = conditional_mmd_flow(
        x0, y, target_x, target_y, 150, n_projections=50, momentum=0.5, generator=gen, record_every=150
    )
    assert torch.equal(result.y, target_y)
    assert not torch.equal(result.x, x0)
    assert result.mmd2[-1] < result.mmd2[0] / 10


def test_same_seed_same_flow():
    x0 = torch.rand(50, 2, generator=torch.Generator().manual_seed(0))
    t = torch.randn(60, 2, generator=torch.Generator().manual_seed(1))
    a = mmd_flow(x0, t, 10, n_projections=10, generator=torch.Generator().manual_seed(3))
    b = mmd_flow(x0, t, 10, n_projections=10, generator=torch.Generator().manual_seed(3), record_every=3)
    assert torch.equal(a.x, b.x)  # recording never consumes the flow's random stream


def test_bad_options():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="momentum"):
        mmd_flow(x, x + 1, 2, momentum=1.0)
    with pytest.raises(ValueError, match="step_size"):
        mmd_flow(x, x + 1, 2, step_size=0)
    with pytest.raises(ValueError, match="n_steps"):
        mmd_flow(x, x + 1, -1)
    with pytest.raises(ValueError, match="same number of rows"):
        conditional_mmd_flow(x, torch.zeros(3, 1), x + 1, torch.zeros(4, 1), 2)
    with pytest.raises(ValueError, match="y contains NaN"):
        conditional_mmd_flow(x, torch.full((4, 1), float("nan")), x + 1, torch.zeros(4, 1), 2)
