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
#: LoDoPaB's attenuation of water and of air in 1/m: μ(HU) = μ_water + HU (μ_water − μ_air) / 1000, so that
#: μ_max is the μ of 3071 HU; water is μ_water / μ_max ≈ 0.246 of LoDoPaB's [0, 1] range.
LODOPAB_MU_WATER = 20.0
LODOPAB_MU_AIR = 0.02
#: CT window of the book's images: −1000 HU ↦ 0 (air) and 1000 HU ↦ 1 (:data:`cmmd.data.ct.CT_WINDOW_HU`).
WINDOW_HU = (-1000.0, 1000.0)
#: Attenuation of the value 1 of a window-scaled image, as a fraction of μ_max. Value v stands for
#: HU = −1000 + 2000 v, i.e. μ = μ_air + 2 v (μ_water − μ_air); the offset μ_air (an optical depth of
#: 0.005 over the 26 cm field) is left out, so μ(v) = v · :data:`WINDOW_ATTENUATION` · μ_max, which puts
#: water (v = 0.5) at μ_water − μ_air ≈ 0.246 μ_max, as in LoDoPaB.
WINDOW_ATTENUATION = (WINDOW_HU[1] - WINDOW_HU[0]) / 1000.0 * (LODOPAB_MU_WATER - LODOPAB_MU_AIR) / LODOPAB_MU_MAX


def add_gaussian_noise(y: torch.Tensor, sigma: float, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``y + σ ε`` with ε ~ N(0, I) of y's shape, dtype and device [method §5: σ = 0.01]."""
    check_floating("y", y)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma < math.inf:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + sigma * noise


def lodopab_mu_scale(image_size: int, attenuation: float = 1.0) -> float:
    r"""Optical depth per unit of a pixel-unit sinogram of a [0, 1] image on LoDoPaB's 26 cm field of view.

    A sinogram from :class:`~cmmd.operators.radon.ParallelBeamRadon` sums pixel values with unit
    step, so the physical line integral is

    .. math::

        \int \mu\, d\ell = a\, \mu_\text{max} \cdot \frac{0.26\ \text{m}}{\text{image\_size}} \cdot s,

    with ``a = attenuation`` the μ of the image value 1 as a fraction of μ_max: 1 for LoDoPaB's own images
    (stored as μ / μ_max), :data:`WINDOW_ATTENUATION` (≈ 0.49) for images windowed from −1000 HU (0) to
    1000 HU (1), so that their water (0.5) gets LoDoPaB's μ_water.
    """
    check_positive_float("attenuation", attenuation)
    return attenuation * LODOPAB_MU_MAX * LODOPAB_FIELD_OF_VIEW / image_size


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
