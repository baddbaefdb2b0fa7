r"""A small CNN classifier that judges generated images: class accuracy, and features for FID/KID [method §6].

A class-conditional sampler is judged by a classifier trained on **real** images that the sampler never saw (a
held-out split): its accuracy on samples says whether they show the requested class, and its penultimate layer
(128 features) is the feature space of the Fréchet and kernel distances (:func:`cmmd.distances.frechet_distance`,
:func:`cmmd.distances.kernel_distance`) between generated and real images, the small-image analogue of FID with an
Inception network. Unlike pixel distances, these features ignore faint pixel noise only as far as the judge does,
so the chapters report the background noise apart (:func:`background_rms`).

Architecture: two 3×3 convolutions (32 and 64 channels, ReLU, 2×2 max-pooling each), a linear layer to 128
features (ReLU) and a linear layer to the class scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmmd._checks import check_floating, check_positive_int

FEATURES = 128  # width of the penultimate layer: the dimension of the FID/KID feature space


class Judge(nn.Module):
    """A CNN classifier of C×S×S images in [0, 1] (S divisible by 4) into ``n_classes`` classes."""

    def __init__(self, channels: int, size: int, n_classes: int = 10) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"the judge pools twice by 2: the image size must be divisible by 4, got {size}")
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * (size // 4) ** 2, FEATURES)
        self.out = nn.Linear(FEATURES, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """The penultimate activations (B, 128) of images x (B, C, S, S)."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (B, n_classes) of images x (B, C, S, S)."""
        return self.out(self.features(x))


def train_judge(images: Tensor, labels: Tensor, *, steps: int, generator: torch.Generator,
                batch_size: int = 64, lr: float = 1e-3) -> Judge:
    """Train a :class:`Judge` by Adam on the cross-entropy of real labelled images.

    Args:
        images: (N, C, S, S) real images in [0, 1], disjoint from the images of the sampler it will judge.
        labels: (N,) int64 class labels in 0..9.
        steps: Adam steps; each draws ``batch_size`` images with replacement from ``generator``.
        generator: source of the initial weights and of the minibatches (on the images' device).
        batch_size, lr: minibatch size and Adam learning rate.

    Returns:
        The trained judge in eval mode, on the images' device.
    """
    check_floating("images", images)
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError(f"images must be (N, C, S, S) and labels (N,), got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    check_positive_int("steps", steps)
    with torch.random.fork_rng(devices=[]):  # the initial weights from the generator, not the global seed
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
        judge = Judge(images.shape[1], images.shape[-1]).to(images.device)
    optimizer = torch.optim.Adam(judge.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator, device=generator.device)
        idx = idx.to(images.device)
        loss = F.cross_entropy(judge(images[idx]), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return judge.eval()


@torch.no_grad()
def predict(judge: Judge, images: Tensor, *, chunk: int = 1000) -> Tensor:
    """Predicted classes (B,) of images (B, C, S, S)."""
    return torch.cat([judge(part).argmax(1) for part in images.split(chunk)])


@torch.no_grad()
def judge_features(judge: Judge, images: Tensor, *, chunk: int = 1000) -> Tensor:
    """Penultimate features (B, 128) of images (B, C, S, S), in float64 for the distance computations."""
    return torch.cat([judge.features(part) for part in images.split(chunk)]).double()


def blank_pixels(real: Tensor, *, share: float = 0.99, level: float = 0.0) -> Tensor:
    """The pixels that are blank (≤ ``level``) in at least ``share`` of the real images: (C, S, S) bool.

    Args:
        real: (N, C, S, S) real images.
    """
    return (real <= level).double().mean(0) >= share


def background_rms(images: Tensor, blank: Tensor) -> Tensor:
    r"""Root mean square of each image over the blank pixels: :math:`\sqrt{\frac{1}{|M|}\sum_{p \in M} x_p^2}`.

    Real images have 0 there, so this is the residual start noise of a sampler's images.

    Args:
        images: (B, C, S, S).
        blank: (C, S, S) bool, :func:`blank_pixels`; must select at least one pixel.

    Returns:
        (B,) per image.
    """
    if not bool(blank.any()):
        raise ValueError("blank selects no pixel: no pixel is blank in the requested share of real images")
    return images[:, blank].double().pow(2).mean(1).sqrt()
