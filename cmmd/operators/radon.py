"""Parallel-beam Radon transform with an exact discrete adjoint, and filtered back-projection.

Geometry (that of ``skimage.transform.radon(image, theta=degrees(angles), circle=True)``):
a square N×N image with rotation centre at pixel (c, c), c = N // 2; detector bins at
offsets ``s_k = k − D // 2`` (k = 0..D−1, unit spacing, D = N by default); for angle θ the
ray of bin k is sampled at N unit-spaced points ``t_j = j − c`` (j = 0..N−1) at

    row = c − s sin θ + t cos θ,    column = c + s cos θ + t sin θ,

and the sinogram entry is the sum of the bilinearly interpolated image (zero outside the image)
over those points. This is skimage's rotate-and-sum with bilinear ``warp`` written as a
gather, so the two agree up to rounding. The adjoint (back-projection) scatters each sinogram
value back onto the same four pixels with the same weights, so it is the exact transpose. The CT settings
of the paper (angles, detector, noise) are listed in the book's page "Method and settings", book/method.md, §5.
"""

from __future__ import annotations

import math

import torch

from cmmd._checks import check_positive_int
from cmmd.operators.base import LinearOperator, check_batch, check_positive_float

FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


def _angles(angles: torch.Tensor | int) -> torch.Tensor:
    if isinstance(angles, int) and not isinstance(angles, bool):
        check_positive_int("angles", angles)
        return torch.arange(angles, dtype=torch.float64) * (math.pi / angles)
    if not isinstance(angles, torch.Tensor) or not angles.is_floating_point() or angles.ndim != 1:
        raise ValueError(f"angles must be an int (number of angles in [0, π)) or a 1D float tensor of "
                         f"radians, got {angles!r:.80}")
    if angles.numel() == 0 or not bool(torch.isfinite(angles).all()):
        raise ValueError("angles must be non-empty and finite")
    return angles.detach().to("cpu", torch.float64)


class ParallelBeamRadon(LinearOperator):
    r"""Parallel-beam Radon transform ``(B, 1, N, N) → (B, 1, n_angles, n_detectors)``.

    .. math::

        (A x)_{a,k} = \sum_{j=0}^{N-1} \sum_{q \in \text{4 neighbours}} w_q(p_{a,k,j})\, x_q,

    ``p_{a,k,j}`` the sample point of angle ``θ_a``, bin ``k`` and step ``j`` (module docstring),
    ``w_q`` its bilinear weights. The work is chunked over angles so that at most
    ``chunk_elements`` gathered values (B × angles × bins × N × 4) exist at once; peak memory
    is about 8 bytes per element in float32 (0.47 GiB measured for 2²⁶ on a GPU). Agrees with
    ``skimage.transform.radon`` to rounding (relative L2 difference 1.3e-15 on Shepp–Logan).

    Args:
        image_size: N.
        angles: radians (1D tensor), or an int n for ``θ_a = a π / n``, a = 0..n−1.
        n_detectors: D, default N (skimage's ``circle=True``).
        angle_step: the angular weight Δθ of one projection in :meth:`fbp`; default π / n_angles.
        chunk_elements: memory bound of one chunk, in tensor elements (fewer, larger chunks
            are faster on a GPU: 362², 1000 angles, B = 10 took 0.44 s at 2²² and 0.07 s at 2²⁶ on an H200).
    """

    def __init__(self, image_size: int, angles: torch.Tensor | int = 180, *, n_detectors: int | None = None,
                 angle_step: float | None = None, chunk_elements: int = 2**25) -> None:
        check_positive_int("image_size", image_size)
        n_detectors = image_size if n_detectors is None else n_detectors
        check_positive_int("n_detectors", n_detectors)
        check_positive_int("chunk_elements", chunk_elements)
        self.angles = _angles(angles)
        self.angle_step = math.pi / self.angles.numel() if angle_step is None else angle_step
        check_positive_float("angle_step", self.angle_step)
        self.image_size = image_size
        self.n_detectors = n_detectors
        self.chunk_elements = chunk_elements
        self.x_shape = (1, image_size, image_size)
        self.y_shape = (1, self.angles.numel(), n_detectors)

    def _chunks(self, batch: int) -> list[slice]:
        per_angle = batch * self.n_detectors * self.image_size * 4
        step = max(1, self.chunk_elements // per_angle)
        n = self.angles.numel()
        return [slice(a, min(a + step, n)) for a in range(0, n, step)]

    def _margin(self) -> int:
        """Zero border wide enough that every sample point and its +1 neighbours fall inside."""
        n, c = self.image_size, self.image_size // 2
        max_s = max(self.n_detectors // 2, self.n_detectors - 1 - self.n_detectors // 2)
        reach = math.ceil(math.hypot(max_s, max(c, n - 1 - c)))
        return max(0, reach - min(c, n - 1 - c)) + 2

    def _taps(self, theta: torch.Tensor, width: int, margin: int) -> tuple[torch.Tensor, ...]:
        """Top-left neighbour index into the padded, flattened image and the fractions (angles, D, N)."""
        c = self.image_size // 2
        s = torch.arange(self.n_detectors, dtype=theta.dtype, device=theta.device) - self.n_detectors // 2
        t = torch.arange(self.image_size, dtype=theta.dtype, device=theta.device) - c
        cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
        row = c - sin * s[:, None] + cos * t
        col = c + cos * s[:, None] + sin * t
        r0, q0 = row.floor(), col.floor()
        index = (r0.long() + margin) * width + (q0.long() + margin)
        return index.flatten(), (row - r0).flatten(), (col - q0).flatten()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, margin = x.shape[0], self._margin()
        padded = torch.nn.functional.pad(x[:, 0], (margin,) * 4)
        width = padded.shape[-1]
        pixels = padded.flatten(1).T.contiguous()  # (pixels, B): one gather fetches a whole batch row
        theta = self.angles.to(device=x.device, dtype=x.dtype)
        parts = []
        for chunk in self._chunks(batch):
            index, fr, fq = self._taps(theta[chunk], width, margin)
            fr, fq = fr[:, None], fq[:, None]
            below = index + width
            top = pixels.index_select(0, index) * (1 - fq) + pixels.index_select(0, index + 1) * fq
            bottom = pixels.index_select(0, below) * (1 - fq) + pixels.index_select(0, below + 1) * fq
            values = top * (1 - fr) + bottom * fr
            parts.append(values.view(-1, self.n_detectors, self.image_size, batch).sum(2))
        return torch.cat(parts, 0).permute(2, 0, 1).unsqueeze(1)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        batch, margin, n = y.shape[0], self._margin(), self.image_size
        width = n + 2 * margin
        pixels = y.new_zeros(width * width, batch)
        rays = y[:, 0].permute(1, 2, 0)  # (angles, D, B)
        theta = self.angles.to(device=y.device, dtype=y.dtype)
        for chunk in self._chunks(batch):
            index, fr, fq = self._taps(theta[chunk], width, margin)
            fr, fq = fr[:, None], fq[:, None]
            ray = rays[chunk, :, None, :].expand(-1, -1, n, -1).reshape(-1, batch)
            top, bottom = ray * (1 - fr), ray * fr
            pixels.index_add_(0, index, top * (1 - fq))
            pixels.index_add_(0, index + 1, top * fq)
            pixels.index_add_(0, index + width, bottom * (1 - fq))
            pixels.index_add_(0, index + width + 1, bottom * fq)
        image = pixels.T.reshape(batch, width, width)[:, margin: margin + n, margin: margin + n]
        return image.unsqueeze(1)

    def fbp(self, sinogram: torch.Tensor, *, filter: str = "ramp", circle: bool = True) -> torch.Tensor:
        r"""Filtered back-projection ``(Δθ / 2) · Aᵀ (h ⊛ y)``, zero outside the inscribed circle.

        ``h`` is skimage's ramp filter (the discrete spatial ramp of Kak & Slaney, ch. 3
        eq. 61, so no DC bias), optionally windowed, applied by FFT with zero padding to
        ``max(64, 2^⌈log₂(2⌈√2 D⌉)⌉)`` bins; ``Aᵀ`` is :meth:`adjoint`. With Δθ = π/n_angles this
        is the scaling π / (2 n_angles) of ``skimage.transform.iradon``.

        Shapes: ``sinogram`` (B, 1, n_angles, D) → image (B, 1, N, N).
        """
        check_batch("sinogram", sinogram, self.y_shape)
        filtered = ramp_filter(sinogram, filter)
        image = self._adjoint(filtered) * (self.angle_step / 2)
        return image * self.circle_mask(image) if circle else image

    def circle_mask(self, like: torch.Tensor) -> torch.Tensor:
        """1 on pixels with (row − c)² + (col − c)² ≤ c², else 0; shape (N, N), like's dtype/device."""
        n, c = self.image_size, self.image_size // 2
        r = torch.arange(n, device=like.device) - c
        return ((r[:, None] ** 2 + r[None, :] ** 2) <= c**2).to(like.dtype)


def fourier_filter(size: int, filter: str = "ramp", *, dtype: torch.dtype = torch.float64,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """skimage's FBP filter of even length ``size`` in FFT order (``_get_fourier_filter``)."""
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    n = torch.cat([torch.arange(1, size // 2 + 1, 2), torch.arange(size // 2 - 1, 0, -2)]).to(torch.float64)
    spatial = torch.zeros(size, dtype=torch.float64)
    spatial[0] = 0.25
    spatial[1::2] = -1 / (math.pi * n) ** 2
    response = 2 * torch.fft.fft(spatial).real
    response = response * _window(size, filter)
    return response.to(device=device, dtype=dtype)


def _window(size: int, filter: str) -> torch.Tensor:
    if filter == "shepp-logan":
        omega = math.pi * torch.fft.fftfreq(size, dtype=torch.float64)
        return torch.where(omega == 0, torch.ones_like(omega), torch.sin(omega) / omega)
    if filter == "cosine":
        return torch.fft.fftshift(torch.sin(torch.arange(size, dtype=torch.float64) * (math.pi / size)))
    if filter == "hamming":
        return torch.fft.fftshift(torch.hamming_window(size, periodic=False, dtype=torch.float64))
    if filter == "hann":
        return torch.fft.fftshift(torch.hann_window(size, periodic=False, dtype=torch.float64))
    return torch.ones(size, dtype=torch.float64)


def ramp_filter(sinogram: torch.Tensor, filter: str = "ramp") -> torch.Tensor:
    """Filter each projection (last dimension) of ``sinogram`` (..., D) as skimage's ``iradon`` does."""
    n_det = sinogram.shape[-1]
    diagonal = math.ceil(math.sqrt(2) * n_det)
    size = max(64, 2 ** math.ceil(math.log2(2 * diagonal)))
    response = fourier_filter(size, filter, dtype=sinogram.dtype, device=sinogram.device)
    spectrum = torch.fft.fft(sinogram, n=size, dim=-1) * response
    return torch.fft.ifft(spectrum, dim=-1).real[..., :n_det].to(sinogram.dtype)


def measured_angle_numbers(n_angles: int, fraction: float) -> range:
    """Numbers i of the angles θ_i = i·π/n_angles that a limited-angle scan keeps: the middle
    ``round(fraction · n_angles)`` (at least one), from first = ⌊(n_angles − kept)/2⌋ on.

    [method §5]: 800 of 1,000 angles; the authors keep numbers 100 .. 899 [code: dival
    ``AngleSubsetDataset(…, slice(100, 900))``]. The missing range is one wedge of width
    (1 − fraction)·π centred on θ = 0 (≡ π).
    """
    check_positive_int("n_angles", n_angles)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    kept = max(1, round(fraction * n_angles))
    first = (n_angles - kept) // 2
    return range(first, first + kept)


def limited_angle(image_size: int, n_angles: int = 1000, fraction: float = 0.8, *,
                  n_detectors: int | None = None) -> ParallelBeamRadon:
    """Radon operator on the middle ``round(fraction · n_angles)`` of n_angles equispaced angles in [0, π)
    (:func:`measured_angle_numbers`). ``angle_step`` stays π / n_angles, so :meth:`fbp` weights each
    remaining projection as in the full-angle scan.
    """
    numbers = measured_angle_numbers(n_angles, fraction)
    angles = torch.arange(numbers.start, numbers.stop, dtype=torch.float64) * (math.pi / n_angles)
    return ParallelBeamRadon(image_size, angles, n_detectors=n_detectors, angle_step=math.pi / n_angles)
