r"""Evaluation a referee accepts: intervals over test items, manifold precision/recall and calibration [method §6].

* **Uncertainty of a comparison.** Every metric is computed on n test items and reported with a 95 %
  bootstrap interval over the items; a difference to a baseline is bootstrapped *paired* (the items are
  resampled jointly for both methods), which removes the item-to-item variation the two share:
  :func:`bootstrap_mean_ci`, :func:`paired_difference_ci`, :func:`bootstrap_ratio_ci`, each an
  :class:`Interval`. Call a method ahead only when the interval of its difference excludes 0. A statistic
  of whole sample sets that is no mean over items (FID, KID, and differences of them) gets
  :func:`bootstrap_statistic_ci`, which resamples every set on its own.
* **Realism beyond FID/KID** (those are in :mod:`cmmd.distances`): :func:`knn_precision_recall`.
* **Calibration of a posterior sampler**: :func:`mse_ratio` against :func:`exact_mse_ratio`,
  :func:`interval_coverage` on a mask, :func:`rank_histogram`.

Conventions as in :mod:`cmmd.metrics`: samples (B, S, *x_shape), B observations with S samples each;
truths (B, *x_shape). Every random function takes a ``torch.Generator``; inputs are never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from cmmd._checks import check_floating, check_number, check_pair, check_positive_int
from cmmd.metrics import coverage_of_intervals, pixel_mask

__all__ = [
    "Interval",
    "bootstrap_mean_ci",
    "paired_difference_ci",
    "bootstrap_ratio_ci",
    "bootstrap_statistic_ci",
    "PrecisionRecall",
    "knn_precision_recall",
    "MSERatio",
    "exact_mse_ratio",
    "mse_ratio",
    "interval_coverage",
    "rank_histogram",
]

CHUNK_ELEMENTS = 1 << 22  # entries formed at once: resampled indices, distance rows, samples of a chunk
METHODS = ("percentile", "bca")


class Interval(NamedTuple):
    """A point estimate with a confidence interval [low, high] at ``level``, from ``n`` items."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def excludes_zero(self) -> bool:
        """True when 0 lies outside [low, high]: the difference is significant at this level."""
        return self.low > 0.0 or self.high < 0.0

    def to_json(self) -> list[float]:
        """``[low, high]``, the form the results files store."""
        return [self.low, self.high]


def _check_generator(generator: object) -> None:
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError("pass generator=torch.Generator().manual_seed(seed), a CPU generator, for reproducible draws")


def _check_items(name: str, values: Tensor) -> Tensor:
    """A (n,) tensor of n >= 2 finite values, as float64 on the CPU."""
    check_floating(name, values)
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(f"{name} must have shape (n,) with n >= 2 items (one value per test item), "
                         f"got {tuple(values.shape)}")
    return values.detach().to("cpu", torch.float64)


def _bootstrap(columns: Tensor, statistic: Callable[[Tensor], Tensor], level: float, n_resamples: int,
               generator: torch.Generator, method: str) -> Interval:
    r"""Interval of ``statistic(column means)`` by resampling the n rows (items) of columns (n, c) jointly.

    Percentile: the α/2 and 1 − α/2 quantiles (α = 1 − level, linear interpolation) of the R bootstrap
    replicates θ*_r. BCa (Efron 1987): the quantiles at
    :math:`\Phi\big(z_0 + (z_0 + z_q)/(1 - a(z_0 + z_q))\big)` for :math:`z_q = \Phi^{-1}(α/2), \Phi^{-1}(1 - α/2)`,
    with bias correction :math:`z_0 = \Phi^{-1}\big((\#\{θ^* < \hat θ\} + \#\{θ^* \le \hat θ\}) / 2R\big)`
    (clamped to [1/2R, 1 − 1/2R]) and acceleration :math:`a = \sum_i d_i^3 / (6 (\sum_i d_i^2)^{3/2})`,
    :math:`d_i = \bar θ_{(\cdot)} - θ_{(i)}` from the leave-one-out jackknife (a = 0 when all d_i = 0).
    """
    check_number("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    check_positive_int("n_resamples", n_resamples)
    _check_generator(generator)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n = columns.shape[0]
    estimate = statistic(columns.mean(0))
    per_chunk = max(1, CHUNK_ELEMENTS // (n * columns.shape[1]))
    replicates = []
    for start in range(0, n_resamples, per_chunk):
        idx = torch.randint(n, (min(per_chunk, n_resamples - start), n), generator=generator)
        replicates.append(statistic(columns[idx].mean(1)))
    theta = torch.cat(replicates)
    alpha = 1.0 - level
    probs = torch.tensor([alpha / 2, 1.0 - alpha / 2], dtype=torch.float64)
    if method == "bca":
        below = float((theta < estimate).sum() + (theta <= estimate).sum()) / (2 * n_resamples)
        below = min(max(below, 0.5 / n_resamples), 1.0 - 0.5 / n_resamples)
        z0 = torch.special.ndtri(torch.tensor(below, dtype=torch.float64))
        jack = statistic((columns.sum(0) - columns) / (n - 1))  # (n,) leave-one-out estimates
        d = jack.mean() - jack
        spread = float(d.square().sum())
        accel = float(d.pow(3).sum()) / (6.0 * spread**1.5) if spread > 0 else 0.0
        zq = torch.special.ndtri(probs)
        probs = torch.special.ndtr(z0 + (z0 + zq) / (1.0 - accel * (z0 + zq))).clamp(0.0, 1.0)
    low, high = torch.quantile(theta, probs).tolist()
    return Interval(float(estimate), low, high, n, float(level))


def bootstrap_mean_ci(values: Tensor, *, level: float = 0.95, n_resamples: int = 10_000,
                      generator: torch.Generator, method: str = "percentile") -> Interval:
    r"""Bootstrap confidence interval of the mean of per-item values [method §6].

    The estimate is :math:`\bar v = \frac1n\sum_i v_i`; the interval comes from ``n_resamples`` means of
    n items drawn with replacement. ``method="percentile"`` (default) takes the α/2 and 1 − α/2 quantiles
    of those means: simple, transformation-respecting, and for the mean of n >= 30 roughly symmetric items
    (PSNR, SSIM, their paired differences) as good as BCa; it is about :math:`\sqrt{(n-1)/n}` narrower than
    the t interval, so it covers slightly less than ``level`` at small n (0.936 instead of 0.95 for
    normal data at n = 30). ``method="bca"`` (bias-corrected and accelerated, Efron 1987: the quantile
    levels shifted by a bias correction z0 from the share of resampled means below the estimate and an
    acceleration a from the jackknife skewness) is the better choice for skewed per-item values (errors,
    ratios) or small n.

    Args:
        values: (n,) one value per test item, n >= 2.
        level: confidence level in (0, 1).
        n_resamples: bootstrap resamples; 10,000 puts the Monte Carlo error of the 95 % ends at about
            3 % of the standard error.
        generator: CPU torch.Generator; the same seed gives the same interval.
        method: "percentile" or "bca".

    Returns:
        ``Interval(estimate, low, high, n, level)``.
    """
    v = _check_items("values", values)
    return _bootstrap(v[:, None], lambda means: means[..., 0], level, n_resamples, generator, method)


def paired_difference_ci(ours: Tensor, baseline: Tensor, *, level: float = 0.95, n_resamples: int = 10_000,
                         generator: torch.Generator, method: str = "percentile") -> Interval:
    r"""Paired bootstrap interval of :math:`\frac1n\sum_i (o_i - b_i)`, ours minus a baseline on the same items.

    The items are resampled jointly (one index draws o_i and b_i together), i.e. :func:`bootstrap_mean_ci`
    of the differences :math:`o_i - b_i`. Its width reflects :math:`\operatorname{Var}(o - b) =
    \operatorname{Var} o + \operatorname{Var} b - 2\operatorname{Cov}(o, b)`: the variation of item
    difficulty that both methods share cancels, which an unpaired comparison of two separate intervals
    cannot do [method §6].

    Args:
        ours: (n,) values of our method per item.
        baseline: (n,) values of the baseline on the same items, in the same order.
        level, n_resamples, generator, method: as in :func:`bootstrap_mean_ci`.

    Returns:
        ``Interval`` of mean(ours − baseline); ``excludes_zero()`` says whether one method is ahead.
    """
    o, b = _check_items("ours", ours), _check_items("baseline", baseline)
    if o.shape != b.shape:
        raise ValueError(f"ours and baseline must hold one value per item for the same n items, "
                         f"got shapes {tuple(ours.shape)} and {tuple(baseline.shape)}")
    return bootstrap_mean_ci(o - b, level=level, n_resamples=n_resamples, generator=generator, method=method)


def bootstrap_ratio_ci(numerator: Tensor, denominator: Tensor, *, level: float = 0.95, n_resamples: int = 10_000,
                       generator: torch.Generator, method: str = "bca") -> Interval:
    r"""Bootstrap interval of the ratio of sums :math:`\sum_i u_i / \sum_i w_i` over items resampled jointly.

    For a ratio of pooled per-item quantities, e.g. :class:`MSERatio` (u = ``single``, w = ``of_mean``): the
    ratio of means is consistent where the mean of per-item ratios is biased. BCa by default, since ratios
    are skewed.

    Args:
        numerator: (n,) per-item u_i.
        denominator: (n,) per-item w_i, with a positive sum.
        level, n_resamples, generator, method: as in :func:`bootstrap_mean_ci`.

    Returns:
        ``Interval`` of Σu/Σw.
    """
    u, w = _check_items("numerator", numerator), _check_items("denominator", denominator)
    if u.shape != w.shape:
        raise ValueError(f"numerator and denominator must have one value per item each, "
                         f"got shapes {tuple(numerator.shape)} and {tuple(denominator.shape)}")
    if not float(w.sum()) > 0:
        raise ValueError("denominator must have a positive sum; a ratio of sums needs Σw > 0")
    cols = torch.stack([u, w], 1)
    return _bootstrap(cols, lambda means: means[..., 0] / means[..., 1], level, n_resamples, generator, method)


def bootstrap_statistic_ci(statistic: Callable[..., Tensor | float], *samples: Tensor, generator: torch.Generator,
                           level: float = 0.95, n_resamples: int = 200) -> Interval:
    r"""Bootstrap interval of a statistic of whole sample sets that is not a mean over items (FID, KID) [method §6].

    Each replicate resamples the rows of every set independently, with replacement and once per replicate:
    :math:`\theta^*_r = T(X_1[I_{1r}], \dots, X_k[I_{kr}])`, :math:`I_{jr}` uniform on the n_j rows of set j.
    A set passed once and used in several terms of T is therefore shared by those terms within a replicate,
    which pairs the comparison in that set: for
    :math:`T(a, b, r) = \mathrm{FD}(a, r) - \mathrm{FD}(b, r)` (two samplers against one real set r) the
    variation of r common to both terms cancels, while a and b vary independently.

    Interval: the α/2 and 1 − α/2 quantiles (α = 1 − level) of the replicates shifted by the bootstrap
    estimate of the bias, :math:`\hat b = \overline{\theta^*} - \hat\theta`:
    :math:`[q_{α/2}(\theta^*) - \hat b,\; q_{1-α/2}(\theta^*) - \hat b]`. A plug-in statistic such as the
    Fréchet distance is biased upwards at finite sizes (about tr C (1/n + 1/m)), and a resample of n rows,
    with its repeated rows, adds about that bias once more; the shift removes this second dose, so the
    interval covers the statistic *at these set sizes* (what a real-versus-real floor at equal sizes is
    compared with), not its infinite-sample limit. For a mean (no bias) it is the percentile interval of
    :func:`bootstrap_mean_ci` up to the Monte Carlo error of :math:`\hat b` (σ/√(nR)). Should the replicates be
    so skewed that the estimate falls outside, the interval is widened to reach it.

    Args:
        statistic: T(*sets) → scalar (tensor or float); it must not change its inputs.
        samples: k >= 1 sets (n_j, ...) with n_j >= 2 rows each, on any device; rows are resampled.
        generator: CPU torch.Generator for the row indices; the same seed gives the same interval.
        level: confidence level in (0, 1).
        n_resamples: replicates R; each costs one evaluation of T. The Monte Carlo error of a 2.5 % quantile
            is about √(.025 · .975 / R) / φ(1.96) = 2.7/√R standard errors (0.19 SE at R = 200).

    Returns:
        ``Interval(estimate, low, high, n, level)``, estimate T(*samples) and n the rows of the first set.
    """
    check_number("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    check_positive_int("n_resamples", n_resamples)
    _check_generator(generator)
    if not samples or any(not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] < 2 for x in samples):
        raise ValueError("pass one or more sample sets, each a tensor (n, ...) with n >= 2 rows, got shapes "
                         f"{[tuple(getattr(x, 'shape', ())) for x in samples]}")
    estimate = float(statistic(*samples))
    replicates = torch.empty(n_resamples, dtype=torch.float64)
    for r in range(n_resamples):
        drawn = [x[torch.randint(x.shape[0], (x.shape[0],), generator=generator).to(x.device)] for x in samples]
        replicates[r] = float(statistic(*drawn))
    shifted = replicates - (replicates.mean() - estimate)
    alpha = 1.0 - level
    low, high = torch.quantile(shifted, torch.tensor([alpha / 2, 1.0 - alpha / 2], dtype=torch.float64)).tolist()
    return Interval(estimate, min(low, estimate), max(high, estimate), int(samples[0].shape[0]), float(level))


# ----------------------------------------------------------------------------- k-NN precision and recall


class PrecisionRecall(NamedTuple):
    """Fractions in [0, 1]: of fake samples on the real manifold, of real samples on the fake manifold."""

    precision: float
    recall: float


def _kth_neighbour_distance(points: Tensor, k: int) -> Tensor:
    """(n,) distance of each point to its k-th nearest other point (duplicates count, at distance 0)."""
    rows = max(1, CHUNK_ELEMENTS // points.shape[0])
    return torch.cat([torch.cdist(blk, points, compute_mode="donot_use_mm_for_euclid_dist").kthvalue(k + 1, 1).values
                      for blk in points.split(rows)])


def _fraction_inside(queries: Tensor, centres: Tensor, radii: Tensor) -> float:
    """Fraction of queries within radii[j] of some centre j (distance <= radius)."""
    rows = max(1, CHUNK_ELEMENTS // centres.shape[0])
    inside = sum(int((torch.cdist(blk, centres, compute_mode="donot_use_mm_for_euclid_dist") <= radii).any(1).sum())
                 for blk in queries.split(rows))
    return inside / queries.shape[0]


def knn_precision_recall(real: Tensor, fake: Tensor, *, k: int = 3) -> PrecisionRecall:
    r"""Improved precision and recall of Kynkäänniemi et al. (2019) in a feature space [method §6].

    Each set spans a manifold estimate, the union of balls around its points with radius the distance to
    the point's k-th nearest neighbour within its own set, :math:`r_k(\phi)`:

    .. math::

        \mathrm{precision} = \frac1m\sum_{j} \mathbb 1\big[\exists i: \|f_j - \phi_i\| \le r_k(\phi_i)\big],
        \qquad
        \mathrm{recall} = \frac1n\sum_{i} \mathbb 1\big[\exists j: \|\phi_i - f_j\| \le r_k(f_j)\big],

    φ the real and f the fake (generated) features. Precision asks whether the samples look real, recall
    whether the real variety is reproduced. The point itself is not its own neighbour, a duplicate is (at
    distance 0), as in the authors' code; distances come from coordinate differences in float64
    (``torch.cdist`` without the matrix-product shortcut), so duplicates are at distance exactly 0. Cost
    O((n + m)² k) time, rows in blocks of 2**22 distances.

    Args:
        real: (n, d) real features, n >= k + 1.
        fake: (m, d) generated features, m >= k + 1.
        k: neighbourhood size (3 in the paper).

    Returns:
        ``PrecisionRecall(precision, recall)``.
    """
    check_pair(real, fake, "real", "fake")
    check_positive_int("k", k)
    if min(real.shape[0], fake.shape[0]) < k + 1:
        raise ValueError(f"real and fake need at least k + 1 = {k + 1} rows each for a k-th neighbour, got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}; lower k or pass more samples")
    r, f = real.detach().to(torch.float64), fake.detach().to(torch.float64)
    precision = _fraction_inside(f, r, _kth_neighbour_distance(r, k))
    recall = _fraction_inside(r, f, _kth_neighbour_distance(f, k))
    return PrecisionRecall(precision, recall)


# ----------------------------------------------------------------------------- calibration


def _check_samples_truth(samples: Tensor, truth: Tensor, least: int) -> None:
    check_floating("samples", samples)
    check_floating("truth", truth)
    if samples.ndim < 2 or samples.shape[1] < least:
        raise ValueError(f"samples must have shape (B, S, *x_shape) with S >= {least}, got {tuple(samples.shape)}")
    expected = (samples.shape[0], *samples.shape[2:])
    if tuple(truth.shape) != expected:
        raise ValueError(f"truth must have shape (B, *x_shape) = {expected} to match samples, got {tuple(truth.shape)}")


def exact_mse_ratio(s: int) -> float:
    r"""The ratio :math:`2/(1 + 1/S) = 2S/(S + 1)` that :func:`mse_ratio` has in expectation for an exact sampler."""
    check_positive_int("S", s)
    return 2.0 * s / (s + 1)


class MSERatio(NamedTuple):
    """Pooled dispersion ratio and its per-item ingredients, each (B,) float64."""

    ratio: float  #: Σ_b single_b / Σ_b of_mean_b
    single: Tensor  #: mean over the S samples of the per-pixel MSE of one sample
    of_mean: Tensor  #: per-pixel MSE of the mean of the S samples
    per_item: Tensor  #: single / of_mean (inf where a sample mean equals its truth)


def mse_ratio(samples: Tensor, truth: Tensor) -> MSERatio:
    r"""Dispersion ratio: mean MSE of single samples over the MSE of the S-sample mean [method §6].

    Per item b with D pixels, :math:`\mathrm{single}_b = \frac{1}{SD}\sum_s\|x_{bs} - x_b\|^2` and
    :math:`\mathrm{of\_mean}_b = \frac1D\|\bar x_b - x_b\|^2`; the ratio pools the items,
    :math:`R = \sum_b \mathrm{single}_b / \sum_b \mathrm{of\_mean}_b` (a ratio of means, consistent as B grows).

    For an exact sampler, the truth x and the samples x_s are independent draws from the posterior
    (mean m, covariance Σ) given y, so x_s − x has covariance 2Σ and :math:`\bar x_S - x` has Σ/S + Σ:

    .. math::

        \mathbb E\|x_s - x\|^2 = 2\operatorname{tr}\Sigma, \qquad
        \mathbb E\|\bar x_S - x\|^2 = (1 + 1/S)\operatorname{tr}\Sigma, \qquad
        R \to \frac{2}{1 + 1/S},

    :func:`exact_mse_ratio` (1.88 for S = 16). An under-dispersed sampler (too little spread, collapsing
    to a point estimate) has a smaller ratio, an over-dispersed one a larger. For an interval over items
    use :func:`bootstrap_ratio_ci` (``single``, ``of_mean``). ``per_item`` suits paired comparisons of two
    samplers on the same items, but its mean is a biased estimate of the ratio (a mean of ratios).

    Args:
        samples: (B, S, *x_shape) posterior samples, S >= 1.
        truth: (B, *x_shape) ground truths.

    Returns:
        ``MSERatio(ratio, single, of_mean, per_item)``, computed in float64.
    """
    _check_samples_truth(samples, truth, 1)
    per_chunk = max(1, CHUNK_ELEMENTS // samples[0].numel())
    single, of_mean = [], []
    for xs, x in zip(samples.split(per_chunk), truth.split(per_chunk)):
        err = xs.to(torch.float64) - x.to(torch.float64).unsqueeze(1)
        single.append(err.square().flatten(1).mean(1))
        of_mean.append(err.mean(1).square().flatten(1).mean(1))
    single_t, of_mean_t = torch.cat(single), torch.cat(of_mean)
    return MSERatio(float(single_t.sum() / of_mean_t.sum()), single_t, of_mean_t, single_t / of_mean_t)


def interval_coverage(samples: Tensor, truth: Tensor, *, k: float = 1.0, mask: Tensor | None = None) -> float:
    r"""Fraction of (masked) pixels whose truth lies within mean ± k·std of the samples [method §6].

    :func:`cmmd.metrics.coverage_of_intervals` at one k: mean and std (divisor S − 1) per pixel; inside means
    :math:`|x - \bar x| \le k\,s`. A mask leaves out pixels that say nothing, e.g. a background whose truth is
    exactly 0.

    For an exact Gaussian posterior, :math:`(x - \bar x)/(s\sqrt{1 + 1/S})` is Student-t with S − 1
    degrees of freedom, so the expected coverage is :math:`P(|t_{S-1}| \le k/\sqrt{1 + 1/S})`: 0.6827 and
    0.9545 for k = 1, 2 only as S → ∞ (0.653 and 0.929 for S = 16).

    Args:
        samples: (B, S, *x_shape), S >= 2.
        truth: (B, *x_shape).
        k: half-width in stds, > 0.
        mask: boolean (B, *x_shape) or (*x_shape), True for pixels to count; None counts all.

    Returns:
        The fraction in [0, 1].
    """
    _check_samples_truth(samples, truth, 2)
    check_number("k", k, low=0.0, low_open=True)
    return coverage_of_intervals(samples, truth, (k,), mask=mask)[k]


def rank_histogram(samples: Tensor, truth: Tensor, *, generator: torch.Generator, mask: Tensor | None = None,
                   bins: int | None = None) -> Tensor:
    r"""Rank (PIT) histogram: counts of the truth's rank among the S samples, per (masked) pixel [method §6].

    The rank of x among x_1..x_S is :math:`\#\{s: x_s < x\} + U`, U uniform on {0, …, #{s: x_s = x}}
    (ties broken at random with ``generator``, so a background where samples and truth are all 0 is
    spread evenly instead of piling into one bin); ranks lie in {0, …, S}. For an exact sampler the truth
    is exchangeable with the samples, so every rank has probability 1/(S + 1): a flat histogram. A U shape
    (truth often outside the samples) means under-dispersion, a dome over-dispersion, a slope bias.

    Args:
        samples: (B, S, *x_shape), S >= 1.
        truth: (B, *x_shape).
        generator: CPU torch.Generator for the ties.
        mask: boolean (B, *x_shape) or (*x_shape); None counts all pixels.
        bins: number of bins, a divisor of S + 1 (ranks r go to bin r·bins // (S + 1)); default S + 1.

    Returns:
        (bins,) int64 counts summing to the number of counted pixels.
    """
    _check_samples_truth(samples, truth, 1)
    _check_generator(generator)
    full = pixel_mask(mask, truth)
    s = samples.shape[1]
    bins = s + 1 if bins is None else bins
    check_positive_int("bins", bins)
    if (s + 1) % bins:
        raise ValueError(f"bins must divide S + 1 = {s + 1} so that every bin holds as many ranks; got {bins}")
    per_chunk = max(1, CHUNK_ELEMENTS // samples[0].numel())
    counts = torch.zeros(bins, dtype=torch.int64)
    for xs, x, m in zip(samples.split(per_chunk), truth.split(per_chunk), full.split(per_chunk)):
        x = x.to(xs.dtype).unsqueeze(1)
        below = (xs < x).sum(1)
        ties = (xs == x).sum(1)
        u = torch.rand(tuple(below.shape), generator=generator, dtype=torch.float64).to(below.device)
        rank = below + torch.minimum((u * (ties + 1)).floor().long(), ties)
        counts += torch.bincount((rank[m] * bins // (s + 1)).cpu(), minlength=bins)
    return counts
