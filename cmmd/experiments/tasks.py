r"""Forward models of the paper's tasks: what is observed of a ground truth x, and how the network sees it [method §5].

One record per task family, in the manner of deepinv's "physics": it holds the operator A and the noise model,
``observe(x, generator)`` returns y = A x + noise, ``condition(y)`` what the flow is conditioned on (the
observation itself, or for CT its filtered back-projection), ``training_pairs(x, generator)`` both at once, and
``encoder(size)`` the module that renders a condition as image channels of side ``size`` for the UNet
(:mod:`cmmd.experiments.encoders`). A record holds only the task's parameters; the image shape comes from the
experiment (:meth:`cmmd.experiments.ExperimentConfig.task_model`), so a reduced profile that shrinks the
images keeps the task as it is.

- :class:`ClassConditional`: y = ``label_scale`` · one-hot(label); the posterior is the class's distribution.
- :class:`Inpainting`: the bottom ``observed_rows`` rows, without noise.
- :class:`SuperResolution`: y = A x + N(0, σ²), A a bicubic ×1/f (CelebA) or a Gaussian blur with stride f
  (materials, on the periodic grid).
- :class:`ComputedTomography`: the parallel-beam Radon transform on the measured angles, with LoDoPaB's
  low-dose Poisson noise; the condition is the FBP image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cmmd.data.materials import materials_tiles
from cmmd.experiments.encoders import ClassChannels, ImageCondition, ObservedImage, ResizedImage
from cmmd.operators import (BicubicDownsample, BlurDownsample, ClassCondition, ParallelBeamRadon, add_gaussian_noise,
                            limited_angle, lodopab_mu_scale, low_dose, measured_angle_numbers)
from cmmd.operators import Inpainting as InpaintingOperator
from cmmd.operators.base import LinearOperator, check_positive_float
from cmmd.operators.noise import LODOPAB_MU_MAX, LODOPAB_PHOTONS


def _side(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape[1:]))


class Task:
    """What every task record provides (see the module docstring); ``x_shape`` is (C, H, W) of one ground truth."""

    def operator(self, x_shape: tuple[int, int, int]) -> LinearOperator:
        raise NotImplementedError

    def observe(self, x: torch.Tensor, x_shape: tuple[int, int, int], *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A x plus the task's noise, for a batch x (B, *x_shape)."""
        return self.operator(x_shape)(x)

    def condition(self, y: torch.Tensor, x_shape: tuple[int, int, int]) -> torch.Tensor:
        """What the flow is conditioned on, given observations y (the identity but for CT)."""
        return y

    def training_pairs(self, x: torch.Tensor, x_shape: tuple[int, int, int], *,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, condition(observe(x))): the pairs (p_i, q_i) the flow learns from."""
        return x, self.condition(self.observe(x, x_shape, generator=generator), x_shape)

    def encoder(self, size: int, x_shape: tuple[int, int, int]) -> nn.Module:
        """Renders a condition as channels of side ``size`` (a pyramid level, or the full image)."""
        raise NotImplementedError

    def cond_channels(self, x_shape: tuple[int, int, int], y_shape: tuple[int, ...]) -> int:
        """How many channels :meth:`encoder` gives."""
        raise NotImplementedError

    def rows(self, x_shape: tuple[int, int, int], y_shape: tuple[int, ...]) -> dict[str, object]:
        """The task's rows of a settings table."""
        raise NotImplementedError


@dataclass(frozen=True)
class ClassConditional(Task):
    """y = ``label_scale`` · one-hot(label) of ``n_classes`` classes [method §5]; x is not observed at all."""

    n_classes: int = 10
    label_scale: float = 10.0

    def operator(self, x_shape: tuple[int, int, int]) -> ClassCondition:
        return ClassCondition(self.n_classes, self.label_scale)

    def observe(self, x, x_shape, *, generator=None):
        raise TypeError("a class-conditional task observes labels, not images: use "
                        "task.operator(x_shape).encode(labels)")

    def encoder(self, size: int, x_shape: tuple[int, int, int]) -> nn.Module:
        return ClassChannels(size, size)

    def cond_channels(self, x_shape, y_shape) -> int:
        return self.n_classes

    def rows(self, x_shape, y_shape) -> dict[str, object]:
        return {"condition": f"{self.label_scale:g} · one-hot of {self.n_classes} classes"}


@dataclass(frozen=True)
class Inpainting(Task):
    """The bottom ``observed_rows`` rows of the image are observed, without noise [method §5]."""

    observed_rows: int

    def operator(self, x_shape: tuple[int, int, int]) -> InpaintingOperator:
        c, h, w = x_shape
        return InpaintingOperator.bottom_rows(h, w, self.observed_rows, channels=c)

    def encoder(self, size: int, x_shape: tuple[int, int, int]) -> nn.Module:
        return ObservedImage(self.operator(x_shape), size=None if size == x_shape[1] else (size, size))

    def cond_channels(self, x_shape, y_shape) -> int:
        return x_shape[0]

    def rows(self, x_shape, y_shape) -> dict[str, object]:
        return {"observed rows": f"bottom {self.observed_rows} of {x_shape[1]}"}


@dataclass(frozen=True)
class SuperResolution(Task):
    """y = A x + N(0, ``noise_std``²), A a reduction by ``factor`` [method §5].

    Attributes:
        factor: f, the side of x over that of y.
        noise_std: σ of the Gaussian observation noise.
        kernel: ``"bicubic"`` (CelebA: bicubic ×1/f) or ``"blur"`` (materials: a ``kernel_size`` Gaussian blur of
            std ``blur_sigma`` with stride f on the periodic grid).
        tile_observations: materials training tiles: ``"periodic"`` (A of each tile on its own periodic grid, the
            authors' code) or ``"cropped"`` (A of the whole slice, cut at the tile: what a large image gives).
        test_size, test_padding: the materials test image's side and the reflect padding (pixels of x) of the
            fully convolutional sampling [code].
    """

    factor: int
    noise_std: float
    kernel: str = "bicubic"
    kernel_size: int = 16
    blur_sigma: float = 2.0
    tile_observations: str = "periodic"
    test_size: int | None = None
    test_padding: int = 0

    def __post_init__(self) -> None:
        if self.kernel not in ("bicubic", "blur"):
            raise ValueError(f"SuperResolution.kernel must be 'bicubic' or 'blur', got {self.kernel!r}")
        if self.tile_observations not in ("periodic", "cropped"):
            raise ValueError(f"SuperResolution.tile_observations must be 'periodic' or 'cropped', "
                             f"got {self.tile_observations!r}")

    def operator(self, x_shape: tuple[int, ...], size: int | tuple[int, int] | None = None) -> LinearOperator:
        """A on images of side ``size`` (or (H, W); default: the training image of ``x_shape``)."""
        size = size or x_shape[-1]
        if self.kernel == "blur":
            return BlurDownsample(size, kernel_size=self.kernel_size, sigma=self.blur_sigma, stride=self.factor)
        return BicubicDownsample(size, factor=self.factor, channels=x_shape[0])

    def observe(self, x, x_shape, *, generator=None):
        """A x + σ ε for images x (B, C, H, W) of any side divisible by f (A built for x's size)."""
        return self.add_noise(self.operator(x_shape, tuple(x.shape[-2:]))(x), generator=generator)

    def add_noise(self, y: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """y + σ ε, ε ~ N(0, I) (:func:`cmmd.operators.add_gaussian_noise`)."""
        return add_gaussian_noise(y, self.noise_std, generator=generator)

    def tile_pairs(self, slices: torch.Tensor, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every training tile of side ``tile`` of the slices (S, 1, H, W) and its noiseless observation, in
        :func:`cmmd.data.materials.materials_tiles` order (``tile_observations`` says how each is observed).

        Returns:
            tiles (S·⌊H/t⌋·⌊W/t⌋, 1, t, t) and observations (same count, 1, t/f, t/f).
        """
        tiles = materials_tiles(slices, tile=tile, n_tiles=None)
        if self.tile_observations == "periodic":
            return tiles, self.operator((1, tile, tile))(tiles)
        whole = self.operator((1, tile, tile), tuple(slices.shape[-2:]))(slices)  # sides must be divisible by f
        return tiles, materials_tiles(whole, tile=tile // self.factor, n_tiles=None)

    def encoder(self, size: int, x_shape: tuple[int, int, int]) -> nn.Module:
        if size == x_shape[1]:
            return ResizedImage(factor=self.factor)  # convolutional: also for larger test images
        return ResizedImage(size=(size, size))

    def cond_channels(self, x_shape, y_shape) -> int:
        return y_shape[0]

    def rows(self, x_shape, y_shape) -> dict[str, object]:
        rows = {"image (training)": _side(x_shape), "observation": _side(y_shape), "noise std": self.noise_std}
        if self.kernel == "blur":
            rows["operator"] = f"{self.kernel_size}×{self.kernel_size} Gaussian blur σ = {self.blur_sigma:g}, " \
                               f"stride {self.factor}"
            rows["tile observations"] = ("A of each tile (periodic)" if self.tile_observations == "periodic"
                                         else "cut from A of the slice")
        return rows


@dataclass(frozen=True)
class ComputedTomography(Task):
    r"""Parallel-beam CT [method §5]: ``n_angles`` equispaced angles in [0, π) of which the middle
    ``angle_fraction`` are measured, ``n_detectors`` bins, LoDoPaB's low-dose Poisson noise when ``low_dose``;
    the flow is conditioned on the ramp-filtered back-projection (FBP) of the sinogram.

    ``attenuation`` is the μ of the image value 1 as a fraction of LoDoPaB's μ_max (81.36 m⁻¹): the photon counts
    are :math:`N \sim \mathrm{Poisson}(4096\, e^{-a \mu_\text{max} (0.26\,\text{m}/s) (A x)})` for images of side
    s (:func:`cmmd.operators.lodopab_mu_scale`). 1 for LoDoPaB's images, which store μ / μ_max (water ≈ 0.246);
    :data:`cmmd.operators.noise.WINDOW_ATTENUATION` ≈ 0.491 for the book's images windowed from −1000 HU (0) to
    1000 HU (1), whose water (0.5) then gets the same μ as in LoDoPaB (water ≈ 0.246 μ_max, not 0.5 μ_max)."""

    n_angles: int
    angle_fraction: float
    n_detectors: int
    low_dose: bool
    attenuation: float = 1.0

    def __post_init__(self) -> None:
        check_positive_float("ComputedTomography.attenuation", self.attenuation)

    def mu_scale(self, x_shape: tuple[int, int, int]) -> float:
        """Optical depth per unit of the pixel-unit sinogram of images of shape ``x_shape`` (the noise's μ)."""
        return lodopab_mu_scale(x_shape[1], self.attenuation)

    def operator(self, x_shape: tuple[int, int, int]) -> ParallelBeamRadon:
        """The Radon transform on the measured angles (:func:`cmmd.operators.limited_angle`)."""
        return limited_angle(x_shape[1], self.n_angles, self.angle_fraction, n_detectors=self.n_detectors)

    def measured_angles(self) -> int:
        """How many of the ``n_angles`` angles are measured (the middle ones)."""
        return len(measured_angle_numbers(self.n_angles, self.angle_fraction))

    def observe(self, x, x_shape, *, generator=None):
        """The observed sinogram of images x (B, 1, s, s): low-dose Poisson counts, or noise-free."""
        sinogram = self.operator(x_shape)(x)
        if self.low_dose:
            return low_dose(sinogram, mu_scale=self.mu_scale(x_shape), generator=generator)
        return sinogram

    def photon_counts(self, y: torch.Tensor, x_shape: tuple[int, int, int]) -> torch.Tensor:
        r"""The detected photon counts behind observed low-dose sinograms y (B, 1, angles, bins), same shape.

        Inverts :func:`cmmd.operators.low_dose`: :math:`N = \operatorname{round}(I_0 e^{-\mu y})` with
        :math:`I_0` = 4096 and μ = :meth:`mu_scale`; a count of 0 (observed as n_min = 0.1) reads back as 0.
        """
        if not self.low_dose:
            raise ValueError("photon_counts needs a low-dose task: a noise-free sinogram has no photon counts")
        return (LODOPAB_PHOTONS * torch.exp(-self.mu_scale(x_shape) * y)).round()

    def condition(self, y: torch.Tensor, x_shape: tuple[int, int, int]) -> torch.Tensor:
        """The FBP image (ramp filter) of sinograms y: the condition of the flow."""
        return self.operator(x_shape).fbp(y)

    def encoder(self, size: int, x_shape: tuple[int, int, int]) -> nn.Module:
        return ImageCondition()

    def cond_channels(self, x_shape, y_shape) -> int:
        return y_shape[0]

    def rows(self, x_shape, y_shape) -> dict[str, object]:
        numbers = measured_angle_numbers(self.n_angles, self.angle_fraction)
        angles = f"{len(numbers)} of {self.n_angles}"
        if len(numbers) < self.n_angles:
            angles += f" (nos. {numbers[0]}–{numbers[-1]})"
        return {"image": _side(x_shape), "angles measured": angles, "detector bins": self.n_detectors,
                "noise": f"Poisson, {LODOPAB_PHOTONS:,.0f} photons" if self.low_dose else "none",
                "attenuation of image value 1": f"{self.attenuation:.3g} μ_max = "
                                                f"{self.attenuation * LODOPAB_MU_MAX:.1f} m⁻¹"}
