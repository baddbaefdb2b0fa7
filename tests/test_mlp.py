"""cmmd.nets.MLP: plain and with random Fourier input features; FlowConfig passes the options on."""

import math

import pytest
import torch

from cmmd.flowspec import Schedule, Sliced
from cmmd.model import ConditionalMMDFlow, FlowConfig
from cmmd.nets import MLP, count_parameters


def test_plain_mlp_is_unchanged_by_default():
    torch.manual_seed(0)
    net = MLP(2, 1, hidden=16, depth=2)
    assert net.fourier_features == 0
    assert "frequencies" not in net.state_dict()
    assert count_parameters(net) == (3 * 16 + 16) + (16 * 16 + 16) + (16 * 2 + 2)


def test_fourier_features_embed_the_input():
    torch.manual_seed(0)
    net = MLP(2, 1, hidden=16, depth=2, fourier_features=5, fourier_scale=2.0)
    assert net.frequencies.shape == (3, 5)
    assert not net.frequencies.requires_grad and count_parameters(net) == (13 * 16 + 16) + (16 * 16 + 16) + 34
    x, y = torch.randn(7, 2), torch.randn(7, 1)
    z = torch.cat([x, y], 1)
    phase = 2 * math.pi * z @ net.frequencies
    expected = net.layers(torch.cat([z, phase.sin(), phase.cos()], 1))
    torch.testing.assert_close(net(x, y), expected)
    # The frequencies are part of the state: a fresh network with the loaded state is the same map.
    torch.manual_seed(1)
    other = MLP(2, 1, hidden=16, depth=2, fourier_features=5, fourier_scale=2.0)
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(other(x, y), net(x, y))


@pytest.mark.parametrize("bad", [dict(fourier_features=-1), dict(fourier_features=2.5),
                                 dict(fourier_features=True), dict(fourier_scale=0.0),
                                 dict(fourier_scale=float("nan"))])
def test_bad_fourier_options_are_named(bad):
    with pytest.raises(ValueError, match="fourier"):
        MLP(2, 1, **bad)


def test_flow_with_fourier_features_fits_saves_and_loads(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=g)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(200, 1, generator=g)
    config = FlowConfig(schedule=Schedule.constant(2, steps=3, momentum=0.8), projection=Sliced(10), train_steps=5,
                        hidden=8, depth=1, fourier_features=4, fourier_scale=1.5)
    model = ConditionalMMDFlow((2,), (1,), config=config).fit(x, y, generator=g, progress=False)
    assert model.networks[0].fourier_features == 4
    # Warm start copies the frequencies: every network sees the same embedding.
    assert torch.equal(model.networks[0].frequencies, model.networks[1].frequencies)
    model.save(tmp_path / "flow.pt")
    loaded = ConditionalMMDFlow.load(tmp_path / "flow.pt")
    obs = torch.tensor([[0.3], [-1.0]])
    torch.testing.assert_close(loaded.sample(obs, 5, generator=torch.Generator().manual_seed(1)),
                               model.sample(obs, 5, generator=torch.Generator().manual_seed(1)))
