"""cmmd.nets.UNet and the condition encoders: shapes for every image size of the paper, deterministic
initialisation, an independent parameter count, learning, full convolutionality, and use inside the model."""

import pytest
import torch

from cmmd.experiments.encoders import ClassChannels, ImageCondition, ObservedImage, ResizedImage
from cmmd.flowspec import Patches, Schedule
from cmmd.model import ConditionalMMDFlow, FlowConfig
from cmmd.nets import UNet, count_parameters
from cmmd.operators import Inpainting


def tiny(x_channels=1, cond_channels=2, encoder=None, **kwargs):
    options = dict(base_width=4, channel_mult=(1, 2), blocks=1)
    options.update(kwargs)
    encoder = encoder if encoder is not None else ImageCondition()
    return UNet(x_channels, cond_channels, condition_encoder=encoder, **options)


@pytest.mark.parametrize("size, channels, mult, encoder, y_shape", [
    (28, 1, (1, 2, 4), ClassChannels(28, 28), (10,)),  # MNIST, class condition
    (32, 3, (1, 2, 4), ObservedImage(Inpainting.bottom_rows(32, 32, 16, channels=3)), (3 * 16 * 32,)),  # CIFAR
    (100, 1, (1, 1, 2, 2, 4, 4), ResizedImage(factor=4), (1, 25, 25)),  # materials tiles, 100 = 4·25
    (362, 1, (1, 1, 2, 2, 4), ImageCondition(), (1, 362, 362)),  # CT: 362 is not a multiple of 16
])
def test_output_shape_for_every_image_size(gen, size, channels, mult, encoder, y_shape):
    cond_channels = y_shape[0] if len(y_shape) == 3 else (10 if isinstance(encoder, ClassChannels) else channels)
    net = UNet(channels, cond_channels, condition_encoder=encoder, base_width=4, channel_mult=mult, blocks=1)
    x = torch.rand(2, channels, size, size, generator=gen)
    y = torch.rand(2, *y_shape, generator=gen)
    with torch.no_grad():
        out = net(x, y)
    assert out.shape == x.shape
    assert torch.all(out == 0)  # the head starts at zero: an untrained Φ is the identity map x ↦ x − Φ


def test_independent_parameter_count():
    """Counted by hand: conv k²·c_in·c_out + c_out, GroupNorm 2c, for base 4, mult (1, 2), one block."""
    stem = 9 * 3 * 4 + 4
    res_4 = 8 + (9 * 16 + 4) + 8 + (9 * 16 + 4)
    down = 9 * 4 * 8 + 8
    res_8 = 16 + (9 * 64 + 8) + 16 + (9 * 64 + 8)
    up_conv = 9 * 8 * 4 + 4
    res_8_to_4 = 16 + (9 * 8 * 4 + 4) + 8 + (9 * 16 + 4) + (8 * 4 + 4)
    head = 8 + 9 * 4 + 1
    expected = stem + res_4 + down + res_8 + res_8 + up_conv + res_8_to_4 + head
    assert count_parameters(tiny(1, 2)) == expected == 3957
    sizes = {blocks: count_parameters(tiny(1, 10, base_width=32, channel_mult=(1, 2, 4), blocks=blocks))
             for blocks in (1, 2)}
    print(f"UNet(base 32, mult (1, 2, 4)) parameters: {sizes}")
    assert sizes[1] < sizes[2]


def test_deterministic_initialisation_under_fork_rng():
    def build(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return tiny()

    state_before = torch.random.get_rng_state()
    a, b, c = build(0), build(0), build(1)
    assert torch.equal(torch.random.get_rng_state(), state_before)  # the global stream is untouched
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_one_training_step_reduces_the_loss(gen):
    net = tiny(1, 10, ClassChannels(12, 12), channel_mult=(1, 2, 4))
    x = torch.rand(16, 1, 12, 12, generator=gen)
    y = 10 * torch.nn.functional.one_hot(torch.arange(16) % 10, 10).float()
    target = x - 0.5 + 0.1 * y[:, :1, None, None]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(2):
        loss = (net(x, y) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        after = float((net(x, y) - target).square().mean())
    assert after < losses[0]


def test_fully_convolutional_on_a_larger_image(gen):
    """Trained size 100×100 with a ×4 upsampling encoder; applied to 600×600 (materials test image)."""
    net = UNet(1, 1, condition_encoder=ResizedImage(factor=4), base_width=4, channel_mult=(1, 2, 2), blocks=1,
               norm_groups=None)
    torch.nn.init.normal_(net.head[-1].weight, std=0.1)
    with torch.no_grad():
        assert net(torch.rand(1, 1, 100, 100), torch.rand(1, 1, 25, 25)).shape == (1, 1, 100, 100)
        assert net(torch.rand(1, 1, 600, 600), torch.rand(1, 1, 150, 150)).shape == (1, 1, 600, 600)
        # Without normalisation the network is translation-equivariant away from the borders:
        # a crop at an even offset gives the same interior as the full image.
        big = torch.rand(1, 1, 112, 112, generator=gen)
        cond = torch.rand(1, 1, 112, 112, generator=gen)
        plain = UNet(1, 1, condition_encoder=ImageCondition(), base_width=4, channel_mult=(1, 2), blocks=1,
                     norm_groups=None)
        torch.nn.init.normal_(plain.head[-1].weight, std=0.1)
        full = plain(big, cond)
        crop = plain(big[:, :, 32:96, 32:96], cond[:, :, 32:96, 32:96])
    assert torch.allclose(crop[:, :, 24:40, 24:40], full[:, :, 56:72, 56:72], atol=1e-5)


def test_condition_encoders():
    labels = torch.tensor([3, 7])
    y = 10 * torch.nn.functional.one_hot(labels, 10).float()
    channels = ClassChannels(5, 6)(y)
    assert channels.shape == (2, 10, 5, 6) and float(channels[1, 7, 4, 5]) == 10
    assert float(channels[1, 3].abs().sum()) == 0
    op = Inpainting.bottom_rows(8, 8, 3)
    image = torch.rand(2, 1, 8, 8)
    observed = ObservedImage(op)(op(image))
    assert torch.equal(observed[:, :, 5:], image[:, :, 5:]) and torch.all(observed[:, :, :5] == 0)
    assert ObservedImage(op, size=(4, 4))(op(image)).shape == (2, 1, 4, 4)
    low = torch.rand(2, 3, 4, 4)
    assert ResizedImage(factor=4)(low).shape == (2, 3, 16, 16)
    assert ResizedImage(size=(8, 8))(low).shape == (2, 3, 8, 8)
    assert torch.equal(ResizedImage(size=(4, 4))(low), low)
    with pytest.raises(ValueError, match="exactly one"):
        ResizedImage()
    with pytest.raises(ValueError, match="B, C, H, W"):
        ImageCondition()(torch.zeros(2, 5))


def test_bad_shapes_are_named():
    net = tiny(1, 10, ClassChannels(8, 8))
    with pytest.raises(ValueError, match="condition encoder returned"):
        net(torch.zeros(2, 1, 6, 6), torch.zeros(2, 10))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\)"):
        net(torch.zeros(2, 3, 8, 8), torch.zeros(2, 10))
    with pytest.raises(ValueError, match="channel_mult"):
        UNet(1, 1, condition_encoder=ImageCondition(), channel_mult=())
    with pytest.raises(ValueError, match="condition_encoder"):
        UNet(1, 1, condition_encoder=None)
    with pytest.raises(ValueError, match="base_width"):
        UNet(1, 1, condition_encoder=ImageCondition(), base_width=0)


def test_conditional_flow_model_trains_and_samples_with_a_unet(gen, tmp_path):
    """ConditionalMMDFlow works unchanged with UNet + patch projections (a smoke-sized fit)."""
    n = 40
    labels = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=gen) * 0.2 + labels[:, None, None, None] * 0.6
    y = 10 * torch.nn.functional.one_hot(labels, 2).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = tiny(1, 2, ClassChannels(8, 8))
    patches = Patches(patch_size=2, windows=(2, 4, 8), weights=(1.0, 1.0, 1.0), n_projections=16, slicing="local")
    config = FlowConfig(schedule=Schedule.constant(2, steps=2, momentum=0.8), projection=patches, train_steps=3,
                        batch_size=8, sample_batch=16)
    model = ConditionalMMDFlow((1, 8, 8), (2,), net=net, config=config)
    model.fit(x, y, generator=torch.Generator().manual_seed(1), progress=False)
    samples = model.sample(y[:3], 4, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (3, 4, 1, 8, 8)
    model.save(tmp_path / "flow.pt")
    loaded = ConditionalMMDFlow.load(tmp_path / "flow.pt", net=tiny(1, 2, ClassChannels(8, 8)))
    again = loaded.sample(y[:3], 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(samples, again)
    assert loaded.config.projection == patches
