"""Noise models applied to clean observations ``A x``; every one takes an explicit generator.

The noise of each experiment is listed in the book's page "Method and settings", book/method.md, §5.
"""

from __future__ import annotations

import math

import torch

from cmmd._checks import check_floating
from cmmd.operators.base import check_positive_float

#: LoDoPaB-CT constants (Leuschner et al., Sci. Data 2021): attenuation normalisation μ_max
#: in 1/m, side of the square field of view in m, incident photons per detector pixel.
LODOPAB_MU_MAX = 81.35858
LODOPAB_FIELD_OF_VIEW = 0.26
LODOPAB_PHOTONS = 4096.0


def add_gaussian_noise(y: torch.Tensor, sigma: float, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``y + σ ε`` with ε ~ N(0, I) of y's shape, dtype and device [method §5: σ = 0.01]."""
    check_floating("y", y)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma < math.inf:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + sigma * noise


def lodopab_mu_scale(image_size: int) -> float:
    """Optical depth per unit of a pixel-unit sinogram of a [0, 1]-normalised LoDoPaB-like image.

    A sinogram from :class:`~cmmd.operators.radon.ParallelBeamRadon` sums pixel values with unit
    step, so the physical line integral is ``μ_max · (0.26 m / image_size) · sino``.
    """
    return LODOPAB_MU_MAX * LODOPAB_FIELD_OF_VIEW / image_size


def low_dose(sinogram: torch.Tensor, *, mu_scale: float, photons_per_pixel: float = LODOPAB_PHOTONS,
             min_count: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Post-log low-dose CT observation with Poisson photon counts (the LoDoPaB model).

    .. math::

        N \sim \mathrm{Poisson}\big(I_0\, e^{-\mu\, s}\big), \qquad
        y = -\log\!\big(\max(N, n_{\min}) / I_0\big) / \mu,

    with ``s`` the clean sinogram, ``μ = mu_scale`` (optical depth per sinogram unit, e.g.
    :func:`lodopab_mu_scale`), ``I_0 = photons_per_pixel`` (LoDoPaB: 4096) and zero counts
    replaced by ``n_min = min_count`` (LoDoPaB: 0.1) so the logarithm stays finite.
    ``y`` is in the units of ``s``; E[y] → s as I₀ → ∞ with bias ≈ 1/(2μλ) and
    variance ≈ 1/(μ²λ), λ = I₀ e^{−μ s} (delta method).
    """
    check_floating("sinogram", sinogram)
    check_positive_float("mu_scale", mu_scale)
    check_positive_float("photons_per_pixel", photons_per_pixel)
    check_positive_float("min_count", min_count)
    rate = photons_per_pixel * torch.exp(-mu_scale * sinogram)
    counts = torch.poisson(rate, generator=generator)
    return -torch.log(counts.clamp(min=min_count) / photons_per_pixel) / mu_scale
