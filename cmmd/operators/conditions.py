"""Conditions that are (almost) the identity: a class label and observed pixels (inpainting).

The authors' settings (the book's page "Method and settings", book/method.md, §3 and §5): the class
condition is ``10 · one-hot(label)``, rendered as 10 constant image channels for the network; inpainting
observes the bottom rows of the image without noise, rendered as the zero-padded observed image.
"""

from __future__ import annotations

import torch

from cmmd._checks import check_floating, check_positive_int
from cmmd.operators.base import LinearOperator, check_positive_float


class ClassCondition(LinearOperator):
    """Class label → ``scale · one-hot``, the paper's class condition [method §5] (scale 10).

    As a linear operator it acts on one-hot (or any) float vectors ``x`` of shape
    (B, n_classes): ``A x = scale · x`` and ``Aᵀ y = scale · y``. Use :meth:`encode` to turn
    integer labels into the condition vector ``scale · e_label``.
    """

    def __init__(self, n_classes: int = 10, scale: float = 10.0) -> None:
        check_positive_int("n_classes", n_classes)
        check_positive_float("scale", scale)
        self.n_classes = n_classes
        self.scale = float(scale)
        self.x_shape = (n_classes,)
        self.y_shape = (n_classes,)

    def encode(self, labels: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Integer labels (B,) in ``[0, n_classes)`` → condition vectors (B, n_classes), on labels' device."""
        _check_labels(labels, self.n_classes)
        one_hot = torch.nn.functional.one_hot(labels.long(), self.n_classes).to(dtype)
        return self.scale * one_hot

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.scale * y


def _check_labels(labels: torch.Tensor, n_classes: int) -> None:
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer torch.Tensor of shape (B,), got {labels!r:.80}")
    if labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"labels must have shape (B,) with B >= 1, got {tuple(labels.shape)}")
    if bool((labels < 0).any()) or bool((labels >= n_classes).any()):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")


def as_channels(cond: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Render condition vectors (B, K) as constant image channels (B, K, height, width)."""
    check_floating("cond", cond)
    if cond.ndim != 2:
        raise ValueError(f"cond must have shape (B, K), got {tuple(cond.shape)}")
    check_positive_int("height", height)
    check_positive_int("width", width)
    return cond[:, :, None, None].expand(-1, -1, height, width).contiguous()


class Inpainting(LinearOperator):
    """Observe the pixels where ``mask`` is True, without noise [method §5].

    ``A x = x[mask]``: ``x`` (B, C, H, W) → ``y`` (B, n_obs), the observed entries in row-major
    (C, H, W) order. ``Aᵀ y`` puts them back and fills the unobserved pixels with zeros, so
    ``A Aᵀ = I`` and ``Aᵀ A`` is the projection onto the observed pixels.

    Args:
        mask: bool tensor (H, W) or (C, H, W), True where a pixel is observed. A 2D mask is
            shared by all ``channels``.
        channels: number of image channels when ``mask`` is 2D (default 1).
    """

    def __init__(self, mask: torch.Tensor, *, channels: int | None = None) -> None:
        self.mask = _channel_mask(mask, channels)
        self.x_shape = tuple(self.mask.shape)
        self.index = self.mask.flatten().nonzero().squeeze(1)
        self.y_shape = (int(self.index.numel()),)

    @classmethod
    def bottom_rows(cls, height: int, width: int, n_rows: int, channels: int = 1) -> "Inpainting":
        """Observe the last ``n_rows`` rows (MNIST/FashionMNIST: 10 of 28; CIFAR-10: 16 of 32)."""
        check_positive_int("height", height)
        check_positive_int("width", width)
        check_positive_int("n_rows", n_rows)
        if n_rows > height:
            raise ValueError(f"n_rows must be <= height = {height}, got {n_rows}")
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask[height - n_rows:] = True
        return cls(mask, channels=channels)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).index_select(1, self.index.to(x.device))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        full = y.new_zeros(y.shape[0], self.mask.numel())
        full = full.index_copy(1, self.index.to(y.device), y)
        return full.view(y.shape[0], *self.x_shape)

    def as_image(self, y: torch.Tensor) -> torch.Tensor:
        """The observation as a zero-padded image (B, C, H, W): the network's condition channels.

        Equal to ``adjoint(y)`` because ``A`` selects pixels.
        """
        return self.adjoint(y)


def _channel_mask(mask: torch.Tensor, channels: int | None) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool torch.Tensor of shape (H, W) or (C, H, W), got {mask!r:.80}")
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must have shape (H, W) or (C, H, W), got {tuple(mask.shape)}")
    if not bool(mask.any()):
        raise ValueError("mask observes no pixel; set at least one entry to True")
    if mask.ndim == 2:
        channels = 1 if channels is None else channels
        check_positive_int("channels", channels)
        return mask.cpu()[None].expand(channels, -1, -1).clone()
    if channels is not None and channels != mask.shape[0]:
        raise ValueError(f"channels = {channels} disagrees with the mask's {mask.shape[0]} channels")
    return mask.cpu().clone()
