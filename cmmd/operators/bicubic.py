"""Bicubic downsampling as a separable matrix: the CelebA super-resolution operator (64 → 16).

The weights are those of antialiased bicubic resampling as in Pillow and
``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``: the Keys cubic kernel
with a = −0.5 stretched by the factor, each row renormalised to sum 1 (which also handles the
image border). Writing it as matrices ``R`` (rows) and ``C`` (columns), ``A x = R x Cᵀ`` and
``Aᵀ y = Rᵀ y C`` exactly. The CelebA setting is listed in the book's page "Method and settings",
book/method.md, §5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cmmd._checks import check_floating, check_positive_int
from cmmd.operators.base import LinearOperator, image_size_pair


def keys_cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic kernel: (a+2)|t|³ − (a+3)|t|² + 1 on |t| < 1, a(|t|³ − 5|t|² + 8|t| − 4) on [1, 2), else 0."""
    t = t.abs()
    inner = ((a + 2) * t - (a + 3)) * t**2 + 1
    outer = (((t - 5) * t + 8) * t - 4) * a
    return torch.where(t < 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def bicubic_matrix(n_in: int, factor: int) -> torch.Tensor:
    """The (n_in // factor, n_in) float64 matrix of antialiased bicubic downsampling by ``factor``.

    Output pixel i has centre ``c = factor·(i + ½)`` in input coordinates; input pixel j gets
    weight ``keys_cubic((j + ½ − c) / factor)`` for j in the support
    ``[int(c − 2·factor + ½), int(c + 2·factor + ½))`` clipped to the image; each row is
    normalised to sum 1 (Pillow's and torch's antialiased convention).
    """
    check_positive_int("n_in", n_in)
    check_positive_int("factor", factor)
    if n_in % factor:
        raise ValueError(f"the image size {n_in} must be divisible by factor = {factor}")
    matrix = torch.zeros(n_in // factor, n_in, dtype=torch.float64)
    support = 2.0 * factor
    for i in range(n_in // factor):
        center = factor * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        j = torch.arange(lo, hi, dtype=torch.float64)
        w = keys_cubic((j + 0.5 - center) / factor)
        matrix[i, lo:hi] = w / w.sum()
    return matrix


class BicubicDownsample(LinearOperator):
    """Antialiased bicubic downsampling by an integer ``factor``: ``A x = R x Cᵀ`` per channel.

    ``R`` = :func:`bicubic_matrix` (H, factor), ``C`` = :func:`bicubic_matrix` (W, factor).
    Shapes: ``x`` (B, channels, H, W) → ``y`` (B, channels, H/factor, W/factor).
    CelebA in the paper: 64×64×3 → 16×16×3, then noise N(0, 0.01²) [method §5].
    """

    def __init__(self, image_size: int | tuple[int, int] = 64, *, factor: int = 4, channels: int = 3) -> None:
        height, width = image_size_pair(image_size)
        check_positive_int("channels", channels)
        self.factor = factor
        self.rows = bicubic_matrix(height, factor)
        self.cols = bicubic_matrix(width, factor)
        self.x_shape = (channels, height, width)
        self.y_shape = (channels, height // factor, width // factor)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = (m.to(device=x.device, dtype=x.dtype) for m in (self.rows, self.cols))
        return rows @ x @ cols.T

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        rows, cols = (m.to(device=y.device, dtype=y.dtype) for m in (self.rows, self.cols))
        return rows.T @ y @ cols


def upsample_bicubic(y: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Bicubic upsampling (B, C, h, w) → (B, C, factor·h, factor·w): the super-resolution baseline.

    ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`` (Keys, a = −0.75,
    replicated border); also the condition channels of the CelebA network [method §3].
    """
    check_floating("y", y)
    if y.ndim != 4:
        raise ValueError(f"y must have shape (B, C, h, w), got {tuple(y.shape)}")
    check_positive_int("factor", factor)
    return F.interpolate(y, scale_factor=factor, mode="bicubic", align_corners=False)
