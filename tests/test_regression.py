r"""cmmd.regression: the MMSE regressor reaches the Bayes error on a linear-Gaussian toy, is reproducible, sees the
inputs it promises, and refuses bad input.

The toy: x ~ N(0, I_d), y = A x + σ ε, ε ~ N(0, I_m). Then x | y is Gaussian with mean K y,
K = Aᵀ(A Aᵀ + σ² I)⁻¹, and covariance Σ = I − K A, so the Bayes (MMSE) error is tr Σ.

Tolerances. (1) Sampling: x − K y ~ N(0, Σ) independently of y, so ‖x − K y‖² has mean tr Σ and variance
2 tr Σ²; the held-out MSE of n pairs has standard error SE = √(2 tr Σ² / n), and we allow 4 SE. (2) Estimation:
ordinary least squares for E[x | y] = K y (m + 1 parameters per output, N Gaussian pairs) has expected excess error
tr Σ · (m + 1) / (N − m − 2); we allow 10 times that for the MLP's extra parameters and the stochastic optimisation
(measured: 2.6 times, excess 0.0028 = 0.32 % of tr Σ).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cmmd.flowspec import Schedule
from cmmd.model import FlowConfig
from cmmd.nets import UNet
from cmmd.regression import MMSERegressor, adam_budget, fit_mmse_regressor

D, M, SIGMA = 3, 4, 0.5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class ConditionOnly(nn.Module):
    """Φ(u, y) = MLP(y): ignores its input u, as a regressor of E[x | y] may."""

    def __init__(self, y_dim: int = M, x_dim: int = D, hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(y_dim, hidden), nn.SiLU(), nn.Linear(hidden, x_dim))

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.body(y.flatten(1)).view_as(u)


def _template(seed: int = 0) -> ConditionOnly:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConditionOnly().double()


def _toy() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (M, D), the posterior-mean matrix K (D, M) and the posterior covariance Σ (D, D)."""
    a = torch.randn(M, D, generator=_gen(0), dtype=torch.float64)
    k = a.T @ torch.linalg.inv(a @ a.T + SIGMA**2 * torch.eye(M, dtype=torch.float64))
    return a, k, torch.eye(D, dtype=torch.float64) - k @ a


def _pairs(a: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    return x, x @ a.T + SIGMA * torch.randn(n, M, generator=g, dtype=torch.float64)


def test_reaches_the_bayes_error_on_a_linear_gaussian_toy():
    a, k, cov = _toy()
    n_train, n_test = 4000, 20000
    x, y = _pairs(a, n_train, 1)
    x_test, y_test = _pairs(a, n_test, 2)
    reg = fit_mmse_regressor(_template(), x, y, steps=1000, batch_size=256, lr=1e-2, generator=_gen(3))
    pred = reg.predict(y_test)
    assert pred.shape == (n_test, D)
    bayes = float(torch.trace(cov))
    se = math.sqrt(2 * float(torch.trace(cov @ cov)) / n_test)
    estimation = 10 * bayes * (M + 1) / (n_train - M - 2)
    excess = float((pred - y_test @ k.T).square().sum(1).mean())  # E‖x̂(y) − E[x | y]‖², no x noise
    mse = float((pred - x_test).square().sum(1).mean())
    assert excess <= estimation, (excess, estimation)
    assert bayes - 4 * se <= mse <= bayes + estimation + 4 * se, (mse, bayes, se, estimation)


def test_same_generator_same_weights_and_template_untouched():
    a, _, _ = _toy()
    x, y = _pairs(a, 200, 4)
    template = _template()
    before = {k: v.clone() for k, v in template.state_dict().items()}
    kwargs = dict(steps=30, batch_size=32, lr=1e-2, lr_schedule="constant", grad_clip=1.0)
    first = fit_mmse_regressor(template, x, y, generator=_gen(5), **kwargs)
    again = fit_mmse_regressor(template, x, y, generator=_gen(5), **kwargs)
    other = fit_mmse_regressor(template, x, y, generator=_gen(6), **kwargs)
    for name, value in first.net.state_dict().items():
        assert torch.equal(value, again.net.state_dict()[name]), name
        assert torch.equal(template.state_dict()[name], before[name]), name
    assert any(not torch.equal(v, other.net.state_dict()[n]) for n, v in first.net.state_dict().items())
    assert first.train_loss == again.train_loss and first.steps == 30 and first.input == "zeros"
    # rows are independent; only the rounding of matrix products of another batch size may differ
    assert torch.allclose(first.predict(y, batch_size=7), first.predict(y, batch_size=200), rtol=0, atol=1e-13)


class Recorder(nn.Module):
    """Records every (u, y) it is called with; predicts a learnable constant."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls.append((u.detach().clone(), y.detach().clone()))
        return u * 0 + self.bias


@pytest.mark.parametrize("mode", ["zeros", "noise"])
def test_network_input_is_fixed_per_pair(mode):
    """zeros: u = 0 always; noise: one U[0, 1]^d draw per pair, the same at every step it is drawn."""
    n = 6
    x = torch.randn(n, 2, generator=_gen(7), dtype=torch.float64)
    y = torch.arange(n, dtype=torch.float64)[:, None]  # y identifies the pair
    reg = fit_mmse_regressor(Recorder(), x, y, steps=20, batch_size=4, lr=1e-2, generator=_gen(8), input=mode)
    seen: dict[int, torch.Tensor] = {}
    for u, ys in reg.net.calls:
        for row, label in zip(u, ys[:, 0].long().tolist()):
            if mode == "zeros":
                assert torch.equal(row, torch.zeros(2, dtype=torch.float64))
            else:
                assert bool(((row >= 0) & (row < 1)).all())
                assert torch.equal(seen.setdefault(label, row), row)
    if mode == "noise":
        assert len({tuple(v.tolist()) for v in seen.values()}) == len(seen) > 1
        with pytest.raises(ValueError, match="generator"):
            reg.predict(y)
        assert reg.predict(y, generator=_gen(9)).shape == (n, 2)


def test_trains_the_project_unet_on_images():
    """The baseline of the image chapters: the same UNet, condition channels from the observation."""
    g = _gen(10)
    x = torch.rand(12, 1, 8, 8, generator=g)
    y = x + 0.1 * torch.randn(12, 1, 8, 8, generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = UNet(1, 1, condition_encoder=nn.Identity(), base_width=8, channel_mult=(1, 2), norm_groups=None)
    reg = fit_mmse_regressor(net, x, y, steps=5, batch_size=4, lr=1e-3, generator=_gen(11))
    assert isinstance(reg, MMSERegressor) and reg.x_shape == (1, 8, 8) and reg.y_shape == (1, 8, 8)
    assert reg.predict(y[:5]).shape == (5, 1, 8, 8)


def test_adam_budget_is_networks_times_steps():
    one = FlowConfig(schedule=Schedule.constant(12, steps=25), train_steps=2000)
    two = FlowConfig(schedule=Schedule.constant(3, steps=25), train_steps=500)
    assert adam_budget(one) == 24_000
    assert adam_budget([one, two]) == 25_500
    for bad in ([], [one, 3], 2000):
        with pytest.raises(ValueError, match="FlowConfig"):
            adam_budget(bad)


class WrongShape(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(M, D + 1)

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.layer(y)


def _fit(**changes):
    a, _, _ = _toy()
    x, y = _pairs(a, 20, 12)
    kwargs = dict(net=_template(), x=x, y=y, steps=2, batch_size=4, lr=1e-3, generator=_gen(13)) | changes
    return fit_mmse_regressor(**kwargs)


BAD = [
    (dict(x=torch.zeros(20, dtype=torch.float64)), "x and y must have shapes"),
    (dict(x=torch.zeros(19, D, dtype=torch.float64)), "same number of pairs"),
    (dict(x=torch.zeros(20, D)), "must match"),
    (dict(x=torch.full((20, D), math.nan, dtype=torch.float64)), "NaN"),
    (dict(net=WrongShape().double()), "returned shape"),
    (dict(net="mlp"), "nn.Module"),
    (dict(steps=0), "steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(lr=0.0), "lr"),
    (dict(grad_clip=-1.0), "grad_clip"),
    (dict(lr_schedule="linear"), "lr_schedule"),
    (dict(input="ones"), "input"),
    (dict(generator=None), "generator"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _fit(**changes)


def test_predict_refuses_bad_shapes():
    reg = _fit()
    with pytest.raises(ValueError, match="y must have shape"):
        reg.predict(torch.zeros(3, M + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch_size"):
        reg.predict(torch.zeros(3, M, dtype=torch.float64), batch_size=0)
