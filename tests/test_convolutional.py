"""Fully convolutional sampling (cmmd.convolutional) of a flow trained on small tiles."""

from __future__ import annotations

import pytest
import torch

from cmmd.convolutional import sample_fully_convolutional
from cmmd.experiments import get_config
from cmmd.model import ConditionalMMDFlow


@pytest.fixture(scope="module")
def model() -> ConditionalMMDFlow:
    """A tiny materials flow (smoke profile) fitted on random 100×100 images."""
    cfg = get_config("materials-superres", "smoke")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((8, *cfg.x_shape), generator=gen)
    y = cfg.operator()(x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net = cfg.network()
    flow = ConditionalMMDFlow(cfg.x_shape, cfg.y_shape, net=net, config=cfg.flow_config())
    return flow.fit(x, y, generator=gen, progress=False)


def test_on_the_training_shape_it_equals_sample(model):
    y = torch.rand((2, *model.y_shape), generator=torch.Generator().manual_seed(2))
    ours = sample_fully_convolutional(model, y, 3, scale=4, generator=torch.Generator().manual_seed(3))
    reference = model.sample(y, 3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_larger_padded_images_have_the_right_shape_and_do_not_depend_on_the_batch_size(model):
    y = torch.rand((1, 1, 30, 34), generator=torch.Generator().manual_seed(4))
    a = sample_fully_convolutional(model, y, 3, scale=4, padding=5, batch_size=1,
                                   generator=torch.Generator().manual_seed(5))
    b = sample_fully_convolutional(model, y, 3, scale=4, padding=5, batch_size=3,
                                   generator=torch.Generator().manual_seed(5))
    assert a.shape == (1, 3, 1, 120, 136)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_clear_errors(model):
    y = torch.rand(1, 1, 20, 20)
    with pytest.raises(ValueError, match="padding"):
        sample_fully_convolutional(model, y, 2, scale=4, padding=20)
    with pytest.raises(ValueError, match="shape"):
        sample_fully_convolutional(model, y[0], 2, scale=4)
    with pytest.raises(RuntimeError, match="trained flow"):
        sample_fully_convolutional(ConditionalMMDFlow((1, 8, 8), (1, 2, 2)), y, 2, scale=4)
