"""The CUDA path: the same numbers as on the CPU. Skipped where no CUDA device exists (CI, these machines)."""

import pytest
import torch

from cmmd.energy import mmd2, mmd2_grad
from cmmd.flowspec import Schedule
from cmmd.model import ConditionalMMDFlow, FlowConfig
from cmmd.sliced import mmd2_grad_1d, sliced_mmd2_grad

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_exact_energy_on_cuda_equals_cpu(gen):
    x = torch.randn(300, 7, generator=gen, dtype=torch.float64)
    y = torch.randn(200, 7, generator=gen, dtype=torch.float64) + 0.3
    assert torch.allclose(mmd2(x.cuda(), y.cuda()).cpu(), mmd2(x, y), rtol=0, atol=1e-12)
    assert torch.allclose(mmd2_grad(x.cuda(), y.cuda()).cpu(), mmd2_grad(x, y), rtol=0, atol=1e-12)


def test_1d_gradient_with_ties_on_cuda_equals_cpu(gen):
    xp = torch.randint(0, 5, (8, 300), generator=gen).double()
    yp = torch.randint(0, 5, (8, 200), generator=gen).double()
    assert torch.allclose(mmd2_grad_1d(xp.cuda(), yp.cuda()).cpu(), mmd2_grad_1d(xp, yp), rtol=0, atol=1e-15)


def test_sliced_gradient_on_cuda_is_unbiased():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(40, 5, generator=g, device="cuda", dtype=torch.float64)
    y = torch.randn(50, 5, generator=g, device="cuda", dtype=torch.float64) + 0.5
    mean = torch.stack([sliced_mmd2_grad(x, y, 2000, generator=g) for _ in range(50)]).mean(0)
    exact = mmd2_grad(x, y)
    assert float((mean - exact).norm() / exact.norm()) < 0.05  # 1.4·sqrt(5/1e5) ≈ 0.01 expected


def test_learned_flow_fits_and_samples_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(300, 2, generator=g, device="cuda")
    y = x.sum(1, keepdim=True)
    cfg = FlowConfig(schedule=Schedule.constant(2, steps=4, momentum=0.8), train_steps=10, hidden=16, depth=2)
    model = ConditionalMMDFlow((2,), (1,), config=cfg).fit(x, y, generator=g, progress=False)
    samples = model.sample(y[:3], 5, generator=g)
    assert samples.device.type == "cuda" and samples.shape == (3, 5, 2)
