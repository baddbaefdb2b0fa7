"""Condition encoders: how a task's observation y reaches the UNet, as image channels of the size of x [method §3].

Each is an ``nn.Module`` y (B, *y_shape) → (B, C_y, H, W) passed to :class:`cmmd.nets.UNet` as ``condition_encoder``;
the task of an experiment (:mod:`cmmd.experiments.tasks`) picks its encoder. They hold no parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cmmd._checks import check_positive_int
from cmmd.operators.conditions import Inpainting, as_channels


class ClassChannels(nn.Module):
    """Class condition vectors (B, K) (10·one-hot) → K constant channels (B, K, H, W) [method §3]."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        check_positive_int("height", height)
        check_positive_int("width", width)
        self.height, self.width = height, width

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return as_channels(y, self.height, self.width)


class ObservedImage(nn.Module):
    """Inpainting observation (B, n_obs) → the zero-padded observed image (B, C, H, W) [method §3],
    optionally resized to ``size`` by area averaging (coarse levels of a pyramid)."""

    def __init__(self, operator: Inpainting, *, size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.operator, self.size = operator, None if size is None else tuple(size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        image = self.operator.as_image(y)
        if self.size is not None and tuple(image.shape[2:]) != self.size:
            image = F.interpolate(image, size=self.size, mode="area")
        return image


class ResizedImage(nn.Module):
    """Low-resolution image (B, C, h, w) → resized (B, C, H, W) (super-resolution [method §3]).

    Give ``factor`` (H = factor·h: convolutional, any input size, e.g. ×4 for materials) or ``size`` (H, W).
    """

    def __init__(
        self, *, factor: float | None = None, size: tuple[int, int] | None = None, mode: str = "bicubic"
    ) -> None:
        super().__init__()
        if (factor is None) == (size is None):
            raise ValueError("give exactly one of factor (H = factor·h) and size (H, W)")
        if factor is not None and not (isinstance(factor, (int, float)) and factor > 0):
            raise ValueError(f"factor must be a number > 0, got {factor!r}")
        self.factor, self.size, self.mode = factor, None if size is None else tuple(size), mode

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim != 4:
            raise ValueError(f"the low-resolution condition must have shape (B, C, h, w), got {tuple(y.shape)}")
        if self.size is not None:
            if tuple(y.shape[2:]) == self.size:
                return y
            return F.interpolate(y, size=self.size, mode=self.mode, align_corners=False)
        if self.factor == 1:
            return y
        return F.interpolate(y, scale_factor=float(self.factor), mode=self.mode, align_corners=False)


class ImageCondition(nn.Module):
    """A condition that already is an image of the size of x, used as it is (CT: the FBP image)."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim != 4:
            raise ValueError(f"the image condition must have shape (B, C, H, W), got {tuple(y.shape)}")
        return y
