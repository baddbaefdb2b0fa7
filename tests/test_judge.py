"""cmmd.judge: the background measure against hand-computed values, the judge's shapes and its reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from cmmd.judge import FEATURES, Judge, background_rms, blank_pixels, judge_features, predict, train_judge


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_blank_pixels_counts_the_share_of_blank_images_per_pixel():
    """Four 1×2×2 images: pixel (0, 0) is 0 in all four, (0, 1) in three, (1, *) in none."""
    real = torch.zeros(4, 1, 2, 2)
    real[:, :, 1, :] = 0.5
    real[0, 0, 0, 1] = 0.2
    assert blank_pixels(real).tolist() == [[[True, False], [False, False]]]
    assert blank_pixels(real, share=0.75).tolist() == [[[True, True], [False, False]]]
    assert blank_pixels(real, level=0.5).all()


def test_background_rms_by_hand():
    """Blank mask = the top row: √((0.3² + 0.4²)/2) = √0.125 for the first image, 0 for the second."""
    images = torch.tensor([[[[0.3, 0.4], [1.0, 1.0]]], [[[0.0, 0.0], [0.7, 0.1]]]])
    blank = torch.tensor([[[True, True], [False, False]]])
    rms = background_rms(images, blank)
    assert rms.dtype == torch.float64 and rms.shape == (2,)
    assert rms[0].item() == pytest.approx(math.sqrt(0.125), rel=1e-6) and rms[1].item() == 0.0
    with pytest.raises(ValueError, match="no pixel"):
        background_rms(images, torch.zeros_like(blank))


def test_judge_shapes_and_a_size_it_cannot_pool():
    judge = Judge(1, 8)
    x = torch.rand(5, 1, 8, 8, generator=gen(0))
    assert judge.features(x).shape == (5, FEATURES) and judge(x).shape == (5, 10)
    feats = judge_features(judge, x, chunk=2)
    assert feats.shape == (5, FEATURES) and feats.dtype == torch.float64 and bool((feats >= 0).all())
    labels = predict(judge, x, chunk=2)
    assert labels.shape == (5,) and labels.dtype == torch.int64
    with pytest.raises(ValueError, match="divisible by 4"):
        Judge(1, 10)


def test_train_judge_is_reproducible_with_the_generator_and_learns_a_separable_task():
    """Class 0 images are dark, class 1 bright: 60 Adam steps separate them. The same seed gives the same
    weights (initial weights and minibatches come from the generator, not the global seed); another seed
    other weights."""
    labels = torch.arange(2).repeat(20)
    images = 0.1 * torch.rand(40, 1, 8, 8, generator=gen(1)) + 0.8 * labels.view(-1, 1, 1, 1)
    one = train_judge(images, labels, steps=60, generator=gen(2), batch_size=16)
    torch.manual_seed(123)  # the global seed must not matter
    two = train_judge(images, labels, steps=60, generator=gen(2), batch_size=16)
    other = train_judge(images, labels, steps=60, generator=gen(3), batch_size=16)
    for (name, p), q in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(one.conv1.weight, other.conv1.weight)
    assert not one.training and bool((predict(one, images) == labels).all())
    with pytest.raises(ValueError, match="labels"):
        train_judge(images, labels[:-1], steps=1, generator=gen(0))
