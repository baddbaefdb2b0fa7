"""Periodic Gaussian blur followed by subsampling: the materials super-resolution operator.

The authors' SiC setting (the book's page "Method and settings", book/method.md, §5): a 16×16 Gaussian
kernel with σ = 2, stride 4, periodic boundary, 100×100 → 25×25 for training tiles and 600×600 → 150×150
for the test image.
"""

from __future__ import annotations

import torch

from cmmd._checks import check_positive_int
from cmmd.operators.base import LinearOperator, check_positive_float, image_size_pair


def gaussian_kernel_1d(kernel_size: int, sigma: float) -> torch.Tensor:
    """Normalised sampled Gaussian ``g[k] ∝ exp(−(k − (K−1)/2)² / 2σ²)``, k = 0..K−1, float64.

    The samples are symmetric about (K−1)/2, also for even K (there it falls between two taps).
    """
    check_positive_int("kernel_size", kernel_size)
    check_positive_float("sigma", sigma)
    k = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-(k**2) / (2 * sigma**2))
    return g / g.sum()


class BlurDownsample(LinearOperator):
    r"""Periodic Gaussian blur, then keep every ``stride``-th pixel.

    .. math::

        y_{c,i,j} = \sum_{k,l=0}^{K-1} g_k\, g_l\;
                    x_{c,\,(s i + k - p) \bmod H,\,(s j + l - p) \bmod W},
        \qquad p = \lfloor (K - s)/2 \rfloor,

    with ``g`` from :func:`gaussian_kernel_1d` (normalised, so constants are preserved).
    Centring convention: the kernel's centre (K−1)/2 lands on the input position
    ``s·i + (K−1)/2 − p``; for K − s even (the paper's K = 16, s = 4 gives p = 6) that is
    ``s·i + (s−1)/2``, the centre of the s×s block of low-resolution pixel i. The blur is a
    periodic correlation computed with the FFT, so it works for any ``image_size`` divisible
    by ``stride`` (also smaller than the kernel: taps then wrap around).
    The adjoint puts ``y`` on the fine grid with zeros in between and applies the
    transposed (flipped) periodic filter.

    Shapes: ``x`` (B, channels, H, W) → ``y`` (B, channels, H/s, W/s).
    """

    def __init__(self, image_size: int | tuple[int, int] = 100, *, kernel_size: int = 16,
                 sigma: float = 2.0, stride: int = 4, channels: int = 1) -> None:
        height, width = image_size_pair(image_size)
        check_positive_int("stride", stride)
        check_positive_int("channels", channels)
        if height % stride or width % stride:
            raise ValueError(f"image_size ({height}, {width}) must be divisible by stride = {stride}")
        self.stride = stride
        self.kernel_1d = gaussian_kernel_1d(kernel_size, sigma)
        self.offset = (kernel_size - stride) // 2
        self.x_shape = (channels, height, width)
        self.y_shape = (channels, height // stride, width // stride)
        self._filter = torch.fft.rfft2(self._periodic_kernel(height, width))

    def _periodic_kernel(self, height: int, width: int) -> torch.Tensor:
        """``h[(k − p) mod H, (l − p) mod W] += g_k g_l``: the correlation filter on the periodic grid."""
        taps = torch.arange(self.kernel_1d.numel()) - self.offset
        h_rows = torch.zeros(height, dtype=torch.float64).index_add(0, taps % height, self.kernel_1d)
        h_cols = torch.zeros(width, dtype=torch.float64).index_add(0, taps % width, self.kernel_1d)
        return torch.outer(h_rows, h_cols)

    def _filter_like(self, t: torch.Tensor) -> torch.Tensor:
        complex_dtype = torch.complex128 if t.dtype == torch.float64 else torch.complex64
        return self._filter.to(device=t.device, dtype=complex_dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft2(x) * self._filter_like(x).conj()
        blurred = torch.fft.irfft2(spectrum, s=x.shape[-2:])
        return blurred[..., :: self.stride, :: self.stride].to(x.dtype)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        fine = y.new_zeros(y.shape[0], *self.x_shape)
        fine[..., :: self.stride, :: self.stride] = y
        spectrum = torch.fft.rfft2(fine) * self._filter_like(y)
        return torch.fft.irfft2(spectrum, s=self.x_shape[-2:]).to(y.dtype)
