"""cmmd.pyramid: what each level trains on and starts from, sampling through the levels, resume, save/load."""

import pytest
import torch
import torch.nn.functional as F

from cmmd.experiments import get_config
from cmmd.flowspec import Schedule
from cmmd.model import ConditionalMMDFlow, FlowConfig
from cmmd.pyramid import PyramidFlow

NOISE = 0.07


def tiny_pyramid(upsample_noise: float = NOISE) -> PyramidFlow:
    """Two levels (1, 4, 4) → (1, 8, 8) of the smoke CIFAR-10 settings, but one channel and a 3-vector y."""
    exp = get_config("cifar10-classcond", "smoke")
    flows = []
    for k, size in enumerate((4, 8)):
        cfg = exp.flow_config(k, projection=exp.flow_config(0).projection)  # the full-space level-0 projections
        flows.append(ConditionalMMDFlow((1, size, size), (3,), config=cfg, net=_tiny_net(size)))
    return PyramidFlow(flows, upsample_noise=upsample_noise)


def _tiny_net(size: int) -> torch.nn.Module:
    torch.manual_seed(size)
    return _Affine(size)


class _Affine(torch.nn.Module):
    """Φ(x, y) = a·x + (W y) rendered per pixel: enough to learn something, cheap, any size."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(1))
        self.w = torch.nn.Linear(3, size * size)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.a * x + self.w(y).view_as(x)


def data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return x, torch.randn(n, 3, generator=g)


def fit(model: PyramidFlow, **kwargs) -> PyramidFlow:
    x, y = data()
    return model.fit(x, y, generator=torch.Generator().manual_seed(7), progress=False, **kwargs)


def test_levels_train_on_pooled_images_and_start_from_the_upsampled_particles(monkeypatch):
    seen = []
    original = ConditionalMMDFlow.fit

    def spy(self, x, y, **kwargs):
        seen.append((x.clone(), kwargs["initial"]))
        return original(self, x, y, **kwargs)

    monkeypatch.setattr(ConditionalMMDFlow, "fit", spy)
    model = fit(tiny_pyramid())
    x, _ = data()
    (targets0, initial0), (targets1, initial1) = seen
    assert torch.equal(targets0, F.avg_pool2d(x, 2)) and torch.equal(targets1, x)
    assert initial0 is None  # level 0 starts from U[0, 1]^d
    # Level 1 starts from level 0's final training particles, each pixel repeated 2×2, plus 0.07·N(0, 1).
    blocky = model.levels[0].particles.repeat_interleave(2, 2).repeat_interleave(2, 3)
    noise = initial1 - blocky
    n = noise.numel()  # 2,560 values: the std estimate has relative standard error 1/sqrt(2n) ≈ 1.4 %
    assert abs(float(noise.std()) / NOISE - 1) < 5 / (2 * n) ** 0.5
    assert abs(float(noise.mean())) < 5 * NOISE / n**0.5


def test_sampling_runs_every_level_with_the_upsampling_between_them():
    model = fit(tiny_pyramid(upsample_noise=0.0))
    y = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    samples = model.sample(y, 5, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (2, 5, 1, 8, 8)
    # Without upsampling noise the pyramid is the composition of its levels on the 2×2-repeated coarse result.
    z = torch.rand((10, 1, 4, 4), generator=torch.Generator().manual_seed(2))
    coarse = model.levels[0].transport(z, y.repeat_interleave(5, 0))
    fine = model.levels[1].transport(coarse.repeat_interleave(2, 2).repeat_interleave(2, 3), y.repeat_interleave(5, 0))
    assert torch.allclose(samples.view(10, 1, 8, 8), fine, atol=1e-6)
    assert model.level_of_network() == [0] * len(model.levels[0].networks) + [1] * len(model.levels[1].networks)
    assert len(model.history.train_loss) == len(model.networks)


def test_interrupted_fit_resumes_to_the_same_pyramid(tmp_path, monkeypatch):
    uninterrupted = fit(tiny_pyramid())
    calls = {"n": 0}
    original = ConditionalMMDFlow._train_network

    def crash_in_level_one(self, *args):
        calls["n"] += 1
        if calls["n"] == len(uninterrupted.levels[0].networks) + 1:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, *args)

    monkeypatch.setattr(ConditionalMMDFlow, "_train_network", crash_in_level_one)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_pyramid(), checkpoint_dir=tmp_path)
    monkeypatch.setattr(ConditionalMMDFlow, "_train_network", original)
    assert (tmp_path / "level-0" / "checkpoint.pt").exists() and not (tmp_path / "level-1").exists()
    resumed = fit(tiny_pyramid(), checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(resumed.networks, uninterrupted.networks):
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa, pb)
    # A finished run resumes to itself without training anything.
    again = fit(tiny_pyramid(), checkpoint_dir=tmp_path, resume=True)
    assert again.history.train_loss == uninterrupted.history.train_loss


def test_save_and_load_give_the_same_samples(tmp_path):
    model = fit(tiny_pyramid())
    model.save(tmp_path / "pyramid.pt")
    loaded = PyramidFlow.load(tmp_path / "pyramid.pt", nets=[_tiny_net(4), _tiny_net(8)])
    y = torch.randn(1, 3)
    a = model.sample(y, 4, generator=torch.Generator().manual_seed(0))
    b = loaded.sample(y, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    model.levels[0].save(tmp_path / "single.pt")
    with pytest.raises(ValueError, match="single-level"):
        PyramidFlow.load(tmp_path / "single.pt")


ONE_NETWORK = FlowConfig(schedule=Schedule.constant(1, steps=25, momentum=0.8))  # the defaults, one network


def test_clear_errors():
    a = ConditionalMMDFlow((1, 4, 4), (3,), config=ONE_NETWORK)
    with pytest.raises(ValueError, match="larger multiple"):
        PyramidFlow([a, ConditionalMMDFlow((1, 6, 6), (3,), config=ONE_NETWORK)])
    with pytest.raises(ValueError, match="share y_shape"):
        PyramidFlow([a, ConditionalMMDFlow((1, 8, 8), (2,), config=ONE_NETWORK)])
    with pytest.raises(RuntimeError, match="call fit"):
        tiny_pyramid().sample(torch.zeros(1, 3), 2)
    with pytest.raises(ValueError, match="full resolution"):
        tiny_pyramid().fit(torch.rand(4, 1, 4, 4), torch.zeros(4, 3), progress=False)


def test_configs_build_a_pyramid_for_cifar_and_a_single_flow_otherwise():
    cifar = get_config("cifar10-classcond", "smoke").build_flow(init_seed=0)
    assert isinstance(cifar, PyramidFlow)
    assert [f.x_shape for f in cifar.levels] == [(3, 4, 4), (3, 8, 8), (3, 16, 16), (3, 32, 32)]
    assert cifar.upsample_noise == NOISE
    mnist = get_config("mnist-classcond", "smoke").build_flow(init_seed=0, lr_schedule="cosine")
    assert isinstance(mnist, ConditionalMMDFlow) and mnist.config.lr_schedule == "cosine"


def test_both_learned_flows_are_one_sampler_interface(tmp_path):
    """ConditionalMMDFlow and PyramidFlow satisfy cmmd.samplers.ConditionalSampler, and load_sampler reads either."""
    from cmmd.experiments import get_config
    from cmmd.samplers import ConditionalSampler, load_sampler

    for name in ("mnist-inpainting", "cifar10-inpainting"):
        exp = get_config(name, "smoke")
        x = torch.rand(exp.n_train, *exp.x_shape, generator=torch.Generator().manual_seed(0))
        y = torch.rand(exp.n_train, *exp.y_shape, generator=torch.Generator().manual_seed(1))
        model = exp.build_flow(init_seed=0).fit(x, y, generator=torch.Generator().manual_seed(2), progress=False)
        assert isinstance(model, ConditionalSampler)
        model.save(tmp_path / f"{name}.pt")
        nets = [exp.network(k) for k in range(len(exp.levels))]
        again = load_sampler(tmp_path / f"{name}.pt", nets=nets)
        assert type(again) is type(model) and isinstance(again, ConditionalSampler)
        g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
        assert torch.equal(again.sample(y[:2], 2, generator=g()), model.sample(y[:2], 2, generator=g()))
