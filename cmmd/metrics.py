"""Metrics for posterior samples: posterior statistics and moments, coverage, PSNR/SSIM, sharpness, residuals.

Distances between sample sets (energy distance, MMD² estimators) are in :mod:`cmmd.distances`.

Conventions: posterior samples have shape (B, S, *x_shape), B observations with S
samples each; ground truths have shape (B, *x_shape). Standard deviations are absolute (never
divided by their own maximum), so uncertainty maps of different images share one colour scale.
Everything returns tensors (or plain floats for scalar summaries) and never changes its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from cmmd._checks import check_floating, check_positive_int

__all__ = [
    "PosteriorStats",
    "posterior_stats",
    "sample_covariance",
    "mean_error",
    "covariance_error",
    "coverage_of_intervals",
    "credible_region_coverage",
    "psnr",
    "ssim",
    "high_frequency_energy",
    "measurement_residual",
]

DEFAULT_CHUNK_ELEMENTS = 1 << 24  # entries of one chunk of samples in posterior_stats


class PosteriorStats(NamedTuple):
    """Per-observation posterior mean and absolute standard deviation, each (B, *x_shape)."""

    mean: Tensor
    std: Tensor


def _check_samples(samples: Tensor) -> None:
    check_floating("samples", samples)
    if samples.ndim < 2:
        raise ValueError(f"samples must have shape (B, S, *x_shape), got {tuple(samples.shape)}")
    if samples.shape[1] < 2:
        raise ValueError(f"samples needs S >= 2 samples per observation for a std, got shape {tuple(samples.shape)}")


def posterior_stats(samples: Tensor, *, chunk_size: int | None = None) -> PosteriorStats:
    """Mean and unbiased (divisor S − 1) standard deviation over the samples axis.

    Args:
        samples: (B, S, *x_shape), S >= 2.
        chunk_size: observations processed at once; by default as many as keep a chunk
            below 2**24 entries. The result does not depend on it.

    Returns:
        ``PosteriorStats(mean, std)``, each (B, *x_shape), absolute (not normalised).
    """
    _check_samples(samples)
    if chunk_size is None:
        per_obs = samples[0].numel()
        chunk_size = max(1, DEFAULT_CHUNK_ELEMENTS // per_obs)
    check_positive_int("chunk_size", chunk_size)
    means, stds = [], []
    for chunk in samples.split(chunk_size, dim=0):
        std, mean = torch.std_mean(chunk, dim=1, correction=1)
        means.append(mean)
        stds.append(std)
    return PosteriorStats(torch.cat(means), torch.cat(stds))


def _check_vector_samples(samples: Tensor) -> None:
    check_floating("samples", samples)
    if samples.ndim != 3 or samples.shape[1] < 2:
        raise ValueError(f"samples must have shape (B, S, d) with S >= 2, got {tuple(samples.shape)}")


def sample_covariance(samples: Tensor) -> Tensor:
    r"""Unbiased sample covariance (divisor S − 1) of each of B sets of S vectors.

    .. math::

        \hat C_b = \frac{1}{S-1}\sum_{s=1}^S (x_{bs} - \bar x_b)(x_{bs} - \bar x_b)^\top,
        \qquad \bar x_b = \frac1S\sum_s x_{bs}.

    Args:
        samples: (B, S, d), S >= 2.

    Returns:
        (B, d, d) tensor of samples' dtype.
    """
    _check_vector_samples(samples)
    centred = samples - samples.mean(1, keepdim=True)
    return centred.transpose(1, 2) @ centred / (samples.shape[1] - 1)


def mean_error(samples: Tensor, mean: Tensor) -> Tensor:
    r"""Euclidean error :math:`\|\bar x_b - m_b\|` of the sample mean of each set against a mean m_b.

    Args:
        samples: (B, S, d) samples.
        mean: (B, d) reference means, e.g. exact posterior means.

    Returns:
        (B,) tensor. For exact samples with covariance C_b it is about sqrt(tr C_b / S).
    """
    _check_vector_samples(samples)
    check_floating("mean", mean)
    if tuple(mean.shape) != (samples.shape[0], samples.shape[2]):
        expected = (samples.shape[0], samples.shape[2])
        raise ValueError(f"mean must have shape (B, d) = {expected}, got {tuple(mean.shape)}")
    return (samples.mean(1) - mean).norm(dim=1)


def covariance_error(samples: Tensor, cov: Tensor) -> Tensor:
    r"""Relative Frobenius error :math:`\|\hat C_b - C_b\|_F / \|C_b\|_F` of each sample covariance.

    :math:`\hat C_b` is :func:`sample_covariance` (divisor S − 1), C_b a reference covariance.

    Args:
        samples: (B, S, d) samples, S >= 2.
        cov: (B, d, d) reference covariances, none of them zero.

    Returns:
        (B,) tensor; 0 where the samples' own covariance is the reference.
    """
    _check_vector_samples(samples)
    check_floating("cov", cov)
    b, _, d = samples.shape
    if tuple(cov.shape) != (b, d, d):
        raise ValueError(f"cov must have shape (B, d, d) = {(b, d, d)}, got {tuple(cov.shape)}")
    cov_norm = torch.linalg.matrix_norm(cov)
    if bool((cov_norm == 0).any()):
        raise ValueError("cov has a zero matrix; a relative error needs a nonzero reference")
    return torch.linalg.matrix_norm(sample_covariance(samples) - cov) / cov_norm


def coverage_of_intervals(
    samples: Tensor, truth: Tensor, ks: Sequence[float] = (1, 2, 3), *, mask: Tensor | None = None,
    chunk_size: int | None = None,
) -> dict[float, float]:
    """Fraction of ground-truth entries inside the posterior intervals mean ± k·std.

    Args:
        samples: (B, S, *x_shape) posterior samples, S >= 2.
        truth: (B, *x_shape) ground truths.
        ks: interval half-widths in units of the posterior std.
        mask: boolean (B, *x_shape) or (*x_shape), True for the entries to count (:func:`pixel_mask`);
            None counts all.
        chunk_size: passed to :func:`posterior_stats`.

    Returns:
        ``{k: fraction}`` over all B·prod(x_shape) entries, with |truth − mean| <= k·std counting
        as inside. For a well-calibrated Gaussian posterior (and large S) these are
        0.6827, 0.9545, 0.9973 for k = 1, 2, 3; entries are pooled, so the number says nothing
        about correlations between entries.
    """
    _check_samples(samples)
    check_floating("truth", truth)
    expected = (samples.shape[0], *samples.shape[2:])
    if tuple(truth.shape) != expected:
        raise ValueError(f"truth must have shape (B, *x_shape) = {expected} to match samples, got {tuple(truth.shape)}")
    if len(ks) == 0 or any(float(k) <= 0 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of numbers > 0, got {ks!r}")
    full = None if mask is None else pixel_mask(mask, truth)
    mean, std = posterior_stats(samples, chunk_size=chunk_size)
    z = (truth.to(mean.dtype) - mean).abs()
    if full is None:
        return {k: float((z <= float(k) * std).double().mean()) for k in ks}
    return {k: float((z <= float(k) * std)[full].double().mean()) for k in ks}


def pixel_mask(mask: Tensor | None, truth: Tensor) -> Tensor:
    """The (B, *x_shape) boolean mask of the entries to count: all True for None, a (*x_shape) mask broadcast over
    the items (e.g. ``truth != 0`` to leave out a background whose truth is exactly 0)."""
    if mask is None:
        return torch.ones_like(truth, dtype=torch.bool)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError("mask must be a boolean tensor, e.g. truth != 0 for the foreground")
    if tuple(mask.shape) not in (tuple(truth.shape), tuple(truth.shape[1:])):
        raise ValueError(f"mask must have shape (B, *x_shape) = {tuple(truth.shape)} or (*x_shape) = "
                         f"{tuple(truth.shape[1:])}, got {tuple(mask.shape)}")
    full = mask.to(truth.device).expand(truth.shape)
    if not bool(full.any()):
        raise ValueError("mask selects no pixel; pass a mask with at least one True entry")
    return full


def _quantile_sorted(sorted_values: Tensor, q: float) -> Tensor:
    """Linear-interpolation quantile (as numpy's default) of an ascending 1D tensor."""
    pos = q * (sorted_values.shape[0] - 1)
    lo = int(pos)
    hi = min(lo + 1, sorted_values.shape[0] - 1)
    frac = pos - lo
    return sorted_values[lo] + frac * (sorted_values[hi] - sorted_values[lo])


def credible_region_coverage(
    log_density_of_samples: Tensor, log_density_of_points: Tensor, levels: Sequence[float]
) -> dict[float, float]:
    r"""Fraction of query points inside the highest-density regions (HDRs) of a reference density.

    Let p be a reference density and X_1..X_M samples from it. The α-HDR is
    :math:`R_\alpha = \{x : \log p(x) \ge t_\alpha\}`, the smallest region of p-probability α; its
    threshold is estimated as the (1 − α) quantile of :math:`\log p(X_m)` (linear interpolation).
    For each α the result is the fraction of query points z_q with :math:`\log p(z_q) \ge t_\alpha`.

    Calibration in both directions:

    * reference = exact posterior (its density and samples), query = learned samples: a fraction
      ≈ α means the learned samples fill the exact HDRs correctly; above α, the learned posterior
      is too concentrated; below α, it puts mass where the exact posterior has little.
    * reference = a density of the learned samples (e.g. a kernel density estimate evaluated at
      the learned samples), query = exact samples: checks that the learned HDRs hold a fraction
      α of the true posterior mass.

    When query and reference come from the same distribution, each fraction is α up to a standard
    error of about :math:`\sqrt{\alpha(1-\alpha)(1/M + 1/Q)}`.

    Args:
        log_density_of_samples: (M,) log p at M >= 2 samples from p.
        log_density_of_points: (Q,) log p at the Q query points.
        levels: probabilities α in (0, 1).

    Returns:
        ``{α: fraction of query points inside the α-HDR}``.
    """
    ref, query = log_density_of_samples, log_density_of_points
    check_floating("log_density_of_samples", ref)
    check_floating("log_density_of_points", query)
    if ref.ndim != 1 or ref.shape[0] < 2:
        raise ValueError(f"log_density_of_samples must have shape (M,) with M >= 2, got {tuple(ref.shape)}")
    if query.ndim != 1:
        raise ValueError(f"log_density_of_points must have shape (Q,), got {tuple(query.shape)}")
    if len(levels) == 0 or any(not 0.0 < float(a) < 1.0 for a in levels):
        raise ValueError(f"levels must be a non-empty sequence of probabilities in (0, 1), got {levels!r}")
    sorted_ref = torch.sort(ref.double()).values
    query = query.double()
    return {a: float((query >= _quantile_sorted(sorted_ref, 1.0 - float(a))).double().mean()) for a in levels}


def _image_batch(name: str, t: Tensor) -> Tensor:
    """(B, H, W) / (B, C, H, W) → float64 numpy-ready (B, C, H, W) on the CPU."""
    check_floating(name, t)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, C, H, W), got {tuple(t.shape)}")
    return t.detach().to("cpu", torch.float64)


def _per_image(x: Tensor, ref: Tensor, data_range: float, fn) -> Tensor:
    xb, rb = _image_batch("x", x), _image_batch("ref", ref)
    if xb.shape != rb.shape:
        raise ValueError(f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}")
    if not float(data_range) > 0:
        raise ValueError(f"data_range must be > 0 (max − min of the possible pixel values), got {data_range!r}")
    values = [fn(xi.numpy(), ri.numpy(), float(data_range)) for xi, ri in zip(xb, rb)]
    return torch.tensor(values, dtype=torch.float64, device=x.device)


def psnr(x: Tensor, ref: Tensor, *, data_range: float) -> Tensor:
    r"""Peak signal-to-noise ratio of each image against its reference, in dB.

    :math:`10 \log_{10}(\mathrm{data\_range}^2 / \mathrm{MSE})` over all pixels and channels of one
    image, computed by ``skimage.metrics.peak_signal_noise_ratio`` (an optional dependency).

    Args:
        x, ref: (B, H, W), (B, 1, H, W) or (B, C, H, W), the same shape.
        data_range: max − min of the possible pixel values (e.g. 1.0 for images in [0, 1]).

    Returns:
        (B,) float64 tensor on x's device (inf where an image equals its reference).
    """
    from skimage.metrics import peak_signal_noise_ratio

    def one(xi, ri, dr):
        return peak_signal_noise_ratio(ri, xi, data_range=dr)

    return _per_image(x, ref, data_range, one)


def ssim(x: Tensor, ref: Tensor, *, data_range: float) -> Tensor:
    """Structural similarity of each image with its reference.

    ``skimage.metrics.structural_similarity`` with its defaults (7×7 uniform window, sample
    covariances, K1 = 0.01, K2 = 0.03); for C > 1 channels the mean over channels. Images need
    H, W >= 7.

    Args:
        x, ref: (B, H, W), (B, 1, H, W) or (B, C, H, W), the same shape.
        data_range: max − min of the possible pixel values.

    Returns:
        (B,) float64 tensor on x's device.
    """
    from skimage.metrics import structural_similarity

    if min(x.shape[-2:]) < 7:
        raise ValueError(f"ssim needs images of at least 7×7 pixels, got x of shape {tuple(x.shape)}")

    def one(xi, ri, dr):
        if xi.shape[0] == 1:
            return structural_similarity(ri[0], xi[0], data_range=dr)
        return structural_similarity(ri, xi, data_range=dr, channel_axis=0)

    return _per_image(x, ref, data_range, one)


def high_frequency_energy(images: Tensor) -> Tensor:
    r"""Mean square of the 5-point discrete Laplacian over the interior pixels: a measure of sharpness.

    .. math::

        \frac{1}{|I|}\sum_{(i,j) \in I} \big(4u_{i,j} - u_{i-1,j} - u_{i+1,j} - u_{i,j-1} - u_{i,j+1}\big)^2,

    I the pixels with all four neighbours, pooled over all leading axes. A constant image gives 0; the
    sinusoid :math:`u_{i,j} = \sin(\omega i)` gives :math:`16\sin^4(\omega/2)\,\mathrm{mean}_I \sin^2(\omega i)`,
    so noise and fine detail weigh most; blurring lowers it.

    Args:
        images: (..., H, W) with H, W >= 3, e.g. (B, C, H, W).

    Returns:
        Scalar tensor of images' dtype.
    """
    check_floating("images", images)
    if images.ndim < 2 or min(images.shape[-2:]) < 3:
        raise ValueError(f"images must have shape (..., H, W) with H, W >= 3, got {tuple(images.shape)}")
    c = images[..., 1:-1, 1:-1]
    lap = (4 * c - images[..., :-2, 1:-1] - images[..., 2:, 1:-1]
           - images[..., 1:-1, :-2] - images[..., 1:-1, 2:])
    return lap.square().mean()


def measurement_residual(y_pred: Tensor, y_obs: Tensor, *, relative: bool = False) -> Tensor:
    r"""Per-sample misfit between predicted measurements A(x_s) and the observation.

    Args:
        y_pred: (N, *obs_shape), e.g. the forward operator applied to N posterior samples.
        y_obs: (N, *obs_shape), or (*obs_shape) for one observation shared by all N.
        relative: if False, the RMS residual :math:`\sqrt{\mathrm{mean}((y_{pred} - y_{obs})^2)}`;
            if True, :math:`\|y_{pred} - y_{obs}\| / \|y_{obs}\|` (Euclidean norms over obs_shape).

    Returns:
        (N,) tensor. For a noise level σ and a sample that explains the data, the RMS residual
        is about σ.
    """
    check_floating("y_pred", y_pred)
    check_floating("y_obs", y_obs)
    if y_pred.ndim < 1 or tuple(y_obs.shape) not in (tuple(y_pred.shape), tuple(y_pred.shape[1:])):
        raise ValueError(
            f"y_obs must have the shape of y_pred {tuple(y_pred.shape)} or of one observation "
            f"{tuple(y_pred.shape[1:])}, got {tuple(y_obs.shape)}"
        )
    resid = (y_pred - y_obs).flatten(1) if y_pred.ndim > 1 else (y_pred - y_obs).unsqueeze(1)
    if not relative:
        return resid.square().mean(1).sqrt()
    obs = y_obs.expand_as(y_pred).flatten(1) if y_pred.ndim > 1 else y_obs.expand_as(y_pred).unsqueeze(1)
    norm = obs.norm(dim=1)
    if bool((norm == 0).any()):
        raise ValueError("y_obs has a zero observation; use relative=False for an absolute residual")
    return resid.norm(dim=1) / norm
