"""cmmd.statistics and the feature-space distances of cmmd.distances against closed forms and scipy.

Every statistical tolerance is derived in the test that uses it (binomial bands, standard errors estimated
from the draws, Monte Carlo errors of bootstrap quantiles); seeds are fixed, so each test is deterministic.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import linalg, spatial, stats

from cmmd.distances import (
    energy_distance,
    energy_distance_unbiased,
    frechet_distance,
    frechet_distance_from_moments,
    kernel_distance,
    mmd2_unbiased,
)
from cmmd.metrics import coverage_of_intervals
from cmmd.statistics import (
    Interval,
    bootstrap_mean_ci,
    bootstrap_ratio_ci,
    bootstrap_statistic_ci,
    exact_mse_ratio,
    interval_coverage,
    knn_precision_recall,
    mse_ratio,
    paired_difference_ci,
    rank_histogram,
)

F64 = torch.float64
Z975 = stats.norm.ppf(0.975)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binomial_band(n: int, p: float, level: float) -> tuple[int, int]:
    low, high = stats.binom.interval(level, n, p)
    return int(low), int(high)


# ----------------------------------------------------------------------------- bootstrap intervals


def t_interval(values: torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    n = values.shape[0]
    half = stats.t.ppf(0.5 + level / 2, n - 1) * float(values.std()) / math.sqrt(n)
    return float(values.mean()) - half, float(values.mean()) + half


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_interval_agrees_with_the_t_interval_at_n_400(method):
    """Normal data, n = 400: the percentile interval is mean ± z·σ̂/√n with σ̂² = (n−1)/n·s², against
    t_{.975, 399}·s/√n: half-widths 0.43 % apart. The Monte Carlo error of a 2.5 % quantile of R = 10⁴ means
    is √(.025·.975/R)/φ(1.96) = 0.027 SE = 1.4 % of the half-width; the skewness of normal data shifts
    the ends by < 0.5 %. 10 % of the half-width is > 6 Monte Carlo errors."""
    values = 3.0 + 2.0 * torch.randn(400, generator=gen(0), dtype=F64)
    ci = bootstrap_mean_ci(values, generator=gen(1), method=method)
    low, high = t_interval(values)
    half = (high - low) / 2
    assert ci.estimate == float(values.mean()) and ci.n == 400 and ci.level == 0.95
    assert abs(ci.low - low) < 0.1 * half and abs(ci.high - high) < 0.1 * half
    # A 90 % interval is narrower by z_.95/z_.975 = 0.839.
    ci90 = bootstrap_mean_ci(values, level=0.9, generator=gen(1), method=method)
    assert (ci90.high - ci90.low) / (2 * half) == pytest.approx(stats.norm.ppf(0.95) / Z975, rel=0.1)


def test_percentile_bootstrap_coverage_matches_its_small_sample_value():
    """400 intervals, each from n = 30 normal values: the percentile interval ≈ mean ± z·√((n−1)/n)·s/√n,
    so its coverage is P(|t_29| ≤ 1.96·√(29/30)) = 0.936, not 0.95 (the known undercoverage). The count of
    covering intervals lies in the binomial 99.9 % band around 0.936 (357..389 of 400). A standard error
    off by √2 either way (coverage 0.83 or 0.995) or a 90 % interval (0.88) falls outside."""
    n, reps = 30, 400
    expected = 2 * stats.t.cdf(Z975 * math.sqrt((n - 1) / n), n - 1) - 1
    g = gen(2)
    covered = 0
    for _ in range(reps):
        values = torch.randn(n, generator=g, dtype=F64)
        ci = bootstrap_mean_ci(values, n_resamples=2000, generator=g)
        covered += ci.low <= 0.0 <= ci.high
    low, high = binomial_band(reps, expected, 0.999)
    assert low <= covered <= high, (covered, expected * reps)


def test_bca_matches_scipy_on_skewed_data_and_differs_from_percentile():
    """Log-normal values (skewness 2.5), n = 40: BCa against scipy.stats.bootstrap(method='BCa'), R = 5·10⁴
    each. The Monte Carlo error of an end is about 2.7/√R SE = 0.012 SE for a normal bootstrap law, a few
    times that at the long upper tail: 0.15 SE is > 4 of them. The percentile interval, from the same
    resamples, lies far higher and lower on both ends in the direction of the skew, by more than 0.15 SE."""
    values = torch.exp(torch.randn(40, generator=gen(0), dtype=F64))
    se = float(values.std(correction=0)) / math.sqrt(40)
    bca = bootstrap_mean_ci(values, n_resamples=50_000, generator=gen(1), method="bca")
    pct = bootstrap_mean_ci(values, n_resamples=50_000, generator=gen(1))
    ref = stats.bootstrap((values.numpy(),), np.mean, method="BCa", n_resamples=50_000,
                          rng=np.random.default_rng(2)).confidence_interval
    assert abs(bca.low - ref.low) < 0.15 * se and abs(bca.high - ref.high) < 0.15 * se
    assert bca.low > pct.low and bca.high - pct.high > 0.3 * se


def test_paired_interval_removes_the_shared_item_variation():
    """Items of very different difficulty (sd 3) and a method better by 0.2 with item noise 0.1: the paired
    interval of the difference has half-width ≈ 1.96·0.1/√200 = 0.014 (the t interval of the differences,
    within 10 %), the unpaired one (the two means resampled independently) ≈ 1.96·3√2/√200 = 0.59. Only
    the paired one excludes 0."""
    n = 200
    g = gen(3)
    baseline = 30.0 + 3.0 * torch.randn(n, generator=g, dtype=F64)
    ours = baseline + 0.2 + 0.1 * torch.randn(n, generator=g, dtype=F64)
    paired = paired_difference_ci(ours, baseline, generator=gen(4))
    assert paired == bootstrap_mean_ci(ours - baseline, generator=gen(4))  # the definition, same draws
    low, high = t_interval(ours - baseline)
    half = (high - low) / 2
    assert abs(paired.low - low) < 0.1 * half and abs(paired.high - high) < 0.1 * half
    gi, gj = gen(5), gen(6)
    unpaired = torch.stack([ours[torch.randint(n, (n,), generator=gi)].mean()
                            - baseline[torch.randint(n, (n,), generator=gj)].mean() for _ in range(4000)])
    u_low, u_high = torch.quantile(unpaired, torch.tensor([0.025, 0.975], dtype=F64)).tolist()
    assert (paired.high - paired.low) < 0.1 * (u_high - u_low)
    assert paired.excludes_zero() and not (u_low > 0 or u_high < 0)


def test_bootstrap_ratio_interval_agrees_with_the_delta_method():
    """R = Σu/Σw over n = 400 items: the delta method gives SE = sd(u − R w)/(√n · mean w) (divisor n, as
    the bootstrap); both ends within 10 % of the half-width, as for the mean (Monte Carlo 1.4 %)."""
    g = gen(7)
    w = 1.0 + torch.rand(400, generator=g, dtype=F64)
    u = 2.0 * w + 0.5 * torch.randn(400, generator=g, dtype=F64)
    ratio = float(u.sum() / w.sum())
    half = Z975 * float((u - ratio * w).std(correction=0)) / (math.sqrt(400) * float(w.mean()))
    for method in ("bca", "percentile"):
        ci = bootstrap_ratio_ci(u, w, generator=gen(8), method=method)
        assert ci.estimate == pytest.approx(ratio, rel=1e-14)
        assert abs(ci.low - (ratio - half)) < 0.1 * half and abs(ci.high - (ratio + half)) < 0.1 * half


def test_interval_is_reproducible_and_serialisable_and_bad_input_is_refused():
    values = torch.randn(50, generator=gen(9), dtype=F64)
    a = bootstrap_mean_ci(values, n_resamples=500, generator=gen(10))
    assert a == bootstrap_mean_ci(values, n_resamples=500, generator=gen(10))
    assert a != bootstrap_mean_ci(values, n_resamples=500, generator=gen(11))
    assert json.loads(json.dumps(a.to_json())) == [a.low, a.high]
    assert Interval(1.0, 0.5, 2.0, 10).excludes_zero() and Interval(-1.0, -2.0, -0.1, 10).excludes_zero()
    assert not Interval(0.1, -0.5, 2.0, 10).excludes_zero()
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        bootstrap_mean_ci(values[:1], generator=gen(0))
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean_ci(values, level=1.0, generator=gen(0))
    with pytest.raises(ValueError, match="generator"):
        bootstrap_mean_ci(values, generator=None)
    with pytest.raises(ValueError, match="method"):
        bootstrap_mean_ci(values, generator=gen(0), method="basic")
    with pytest.raises(ValueError, match="same n items"):
        paired_difference_ci(values, values[:40], generator=gen(0))
    with pytest.raises(ValueError, match="positive sum"):
        bootstrap_ratio_ci(values, torch.zeros(50, dtype=F64), generator=gen(0))


def test_statistic_interval_of_a_mean_is_the_percentile_interval():
    """T = mean of one set (n = 400 normal values): no bias, so the interval is the percentile interval,
    mean ± z·σ̂/√n, as bootstrap_mean_ci and the t interval (0.43 % apart at n = 400). At R = 4,000 each end
    has a Monte Carlo error of √(.025·.975/R)/φ(1.96) = 0.042 SE = 2.2 % of the half-width (1.96 SE), the bias
    shift one of SE/√R = 0.8 %; 10 % of the half-width is > 4 such errors."""
    values = 3.0 + 2.0 * torch.randn(400, generator=gen(0), dtype=F64)
    ci = bootstrap_statistic_ci(lambda v: v.mean(), values, generator=gen(2), n_resamples=4000)
    ref = bootstrap_mean_ci(values, generator=gen(1))
    low, high = t_interval(values)
    half = (high - low) / 2
    assert ci.estimate == pytest.approx(float(values.mean()), abs=1e-12) and ci.n == 400 and ci.level == 0.95
    for other in ((ref.low, ref.high), (low, high)):
        assert abs(ci.low - other[0]) < 0.1 * half and abs(ci.high - other[1]) < 0.1 * half


def test_statistic_interval_shares_a_set_used_in_two_terms():
    """T(a, b, c) = (ā − b̄) − (c̄ − b̄) = ā − c̄: b, passed once, is resampled once per replicate and cancels,
    so the interval is ā − c̄ ± z·√(s_a²/n + s_c²/n) (≈ ±0.14) although b has σ = 10; resampling b once per
    term would add 2·100/n to the variance (width × 10). R = 2,000: Monte Carlo error per end 0.06 SE = 3 % of
    the half-width; tolerance 12 %."""
    a, c = torch.randn(400, generator=gen(3), dtype=F64), torch.randn(400, generator=gen(4), dtype=F64)
    b = 10.0 * torch.randn(400, generator=gen(5), dtype=F64)
    ci = bootstrap_statistic_ci(lambda x, y, z: (x.mean() - y.mean()) - (z.mean() - y.mean()), a, b, c,
                                generator=gen(6), n_resamples=2000)
    centre = float(a.mean() - c.mean())
    half = Z975 * math.sqrt(float(a.var()) / 400 + float(c.var()) / 400)
    assert ci.estimate == pytest.approx(centre, abs=1e-12)
    assert abs(ci.low - (centre - half)) < 0.12 * half and abs(ci.high - (centre + half)) < 0.12 * half


def test_statistic_interval_of_a_frechet_distance_follows_the_delta_method():
    """One feature, a ~ N(0, 1), b ~ N(3, 1), n = m = 2,000: FD = (ā − b̄)² + (s_a − s_b)², whose first term
    dominates; by the delta method its standard error is 2|ā − b̄|·√(s_a²/n + s_b²/m) (the second term
    varies by O(1/n) = 5e-4, 3 % of it). R = 1,000: Monte Carlo error per end 0.085 SE = 4.3 % of the
    half-width; the bias shift (2/n = 0.001, 0.5 % of it) is removed. Tolerance 15 % of the half-width."""
    a = torch.randn(2000, 1, generator=gen(7), dtype=F64)
    b = 3.0 + torch.randn(2000, 1, generator=gen(8), dtype=F64)
    ci = bootstrap_statistic_ci(frechet_distance, a, b, generator=gen(9), n_resamples=1000)
    gap = float(a.mean() - b.mean())
    assert ci.estimate == pytest.approx(gap**2 + float(a.std() - b.std()) ** 2, rel=1e-9)
    half = Z975 * 2 * abs(gap) * math.sqrt(float(a.var()) / 2000 + float(b.var()) / 2000)
    assert abs(ci.low - (ci.estimate - half)) < 0.15 * half and abs(ci.high - (ci.estimate + half)) < 0.15 * half


def test_statistic_interval_is_reproducible_contains_its_estimate_and_refuses_bad_input():
    """Real-versus-real FD at n = 100 in 5 features: plug-in bias ≈ tr C (1/n + 1/m) = 0.1 exceeds its spread,
    and an unshifted percentile interval of the resamples (bias twice) would miss the estimate; the shifted
    one contains it. Same seed, same interval; bad input is refused."""
    a = torch.randn(100, 5, generator=gen(10), dtype=F64)
    b = torch.randn(100, 5, generator=gen(11), dtype=F64)
    ci = bootstrap_statistic_ci(frechet_distance, a, b, generator=gen(12))
    assert ci.low <= ci.estimate <= ci.high and ci.n == 100
    assert ci == bootstrap_statistic_ci(frechet_distance, a, b, generator=gen(12))
    with pytest.raises(ValueError, match="CPU generator"):
        bootstrap_statistic_ci(frechet_distance, a, b, generator=None)
    with pytest.raises(ValueError, match="n >= 2 rows"):
        bootstrap_statistic_ci(frechet_distance, a[:1], b, generator=gen(0))
    with pytest.raises(ValueError, match="n >= 2 rows"):
        bootstrap_statistic_ci(lambda: 0.0, generator=gen(0))


# ----------------------------------------------------------------------------- energy distance (U-statistic)


def test_energy_distance_unbiased_equals_the_pairwise_means_of_scipy():
    x = torch.randn(7, 3, generator=gen(12), dtype=F64)
    y = 0.4 + 0.8 * torch.randn(5, 3, generator=gen(13), dtype=F64)
    xs, ys = x.numpy(), y.numpy()
    # pdist lists each pair i < i' once: its mean is the mean over i ≠ i'.
    expected = 2 * spatial.distance.cdist(xs, ys).mean() - spatial.distance.pdist(xs).mean() \
        - spatial.distance.pdist(ys).mean()
    value = energy_distance_unbiased(x, y)
    assert float(value) == pytest.approx(expected, rel=1e-12)
    assert float(value) == 2 * float(mmd2_unbiased(x, y))
    # In 1D the V-statistic is scipy's energy distance squared; the two differ by the diagonal terms.
    a, b = x[:, :1], y[:, :1]
    assert float(energy_distance(a, b)) == pytest.approx(stats.energy_distance(a[:, 0], b[:, 0]) ** 2, rel=1e-12)
    assert abs(float(energy_distance_unbiased(a, b)) - float(energy_distance(a, b))) > 0.05


def test_energy_distance_unbiased_averages_to_zero_for_one_distribution():
    """300 pairs of N = M = 15 points of N(0, I₃): the U-statistic's mean is within 4 SE of 0, the
    V-statistic's is near its noise floor E‖X − X'‖(1/N + 1/M) = 2·2√2·√(2/π)/15 = 0.30."""
    g = gen(14)
    u, v = [], []
    for _ in range(300):
        x, y = torch.randn(15, 3, generator=g, dtype=F64), torch.randn(15, 3, generator=g, dtype=F64)
        u.append(float(energy_distance_unbiased(x, y)))
        v.append(float(energy_distance(x, y)))
    u_t, v_t = torch.tensor(u), torch.tensor(v)
    se = float(u_t.std()) / math.sqrt(300)
    assert abs(float(u_t.mean())) < 4 * se
    floor = 2 * 2 * math.sqrt(2) * math.sqrt(2 / math.pi) / 15
    assert abs(float(v_t.mean()) - floor) < 4 * float(v_t.std()) / math.sqrt(300)


# ----------------------------------------------------------------------------- Fréchet and kernel distances


def frechet_reference(mu_a, cov_a, mu_b, cov_b) -> float:
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(root)))


def test_frechet_distance_from_moments_matches_scipy_sqrtm_and_closed_forms():
    rng = np.random.default_rng(15)
    k = 6
    m_a, m_b = rng.normal(size=(k, k)), rng.normal(size=(k, k))
    cov_a, cov_b = m_a @ m_a.T + 0.1 * np.eye(k), m_b @ m_b.T + 0.1 * np.eye(k)
    mu_a, mu_b = rng.normal(size=k), rng.normal(size=k)
    value = frechet_distance_from_moments(*(torch.from_numpy(t) for t in (mu_a, cov_a, mu_b, cov_b)))
    assert value.dtype == F64 and value.shape == ()
    assert float(value) == pytest.approx(frechet_reference(mu_a, cov_a, mu_b, cov_b), rel=1e-9)
    # 1D: (μa − μb)² + (σa − σb)²; commuting (diagonal, singular) covariances: Σ(√λa − √λb)².
    one = frechet_distance_from_moments(torch.tensor([1.0]), torch.tensor([[4.0]]),
                                        torch.tensor([-0.5]), torch.tensor([[0.25]]))
    assert float(one) == pytest.approx(1.5**2 + 1.5**2, rel=1e-6)
    lam_a, lam_b = torch.tensor([4.0, 0.0, 1.0, 0.0], dtype=F64), torch.tensor([1.0, 9.0, 0.0, 0.0], dtype=F64)
    diag = frechet_distance_from_moments(torch.zeros(4, dtype=F64), torch.diag(lam_a),
                                         torch.zeros(4, dtype=F64), torch.diag(lam_b))
    assert float(diag) == pytest.approx(float((lam_a.sqrt() - lam_b.sqrt()).square().sum()), abs=1e-12)
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance_from_moments(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]),
                                      torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="one k"):
        frechet_distance_from_moments(torch.zeros(3), torch.eye(2), torch.zeros(2), torch.eye(2))


def test_frechet_distance_of_features_is_invariant_to_permuting_and_rotating_them():
    g = gen(16)
    a = torch.randn(300, 5, generator=g, dtype=F64) @ torch.randn(5, 5, generator=g, dtype=F64)
    b = 0.3 + torch.randn(200, 5, generator=g, dtype=F64)
    value = float(frechet_distance(a, b))
    an, bn = a.numpy(), b.numpy()
    reference = frechet_reference(an.mean(0), np.cov(an, rowvar=False), bn.mean(0), np.cov(bn, rowvar=False))
    assert value == pytest.approx(reference, rel=1e-9)
    perm = torch.randperm(5, generator=g)
    assert float(frechet_distance(a[:, perm], b[:, perm])) == pytest.approx(value, rel=1e-10)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))
    assert float(frechet_distance(a @ q, b @ q)) == pytest.approx(value, rel=1e-9)
    assert float(frechet_distance(a.float(), b.float())) == pytest.approx(value, rel=1e-5)
    assert abs(float(frechet_distance(a, a))) < 1e-10 * float(torch.cov(a.T).trace())


def kid_reference(a: list[list[float]], b: list[list[float]]) -> float:
    k = len(a[0])

    def kern(u, v):
        return (sum(p * q for p, q in zip(u, v)) / k + 1) ** 3

    n, m = len(a), len(b)
    aa = sum(kern(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    bb = sum(kern(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return aa + bb - 2 * sum(kern(u, v) for u in a for v in b) / (n * m)


def test_kernel_distance_equals_the_sums_written_out_and_subsets_of_everything_agree():
    a = torch.randn(6, 3, generator=gen(17), dtype=F64)
    b = 0.5 + torch.randn(6, 3, generator=gen(18), dtype=F64)
    value = float(kernel_distance(a, b))
    assert value == pytest.approx(kid_reference(a.tolist(), b.tolist()), rel=1e-12)
    assert float(kernel_distance(a, b[:5])) == pytest.approx(kid_reference(a.tolist(), b[:5].tolist()), rel=1e-12)
    # Subsets of all 6 rows are permutations, and KD is permutation invariant.
    whole = kernel_distance(a, b, n_subsets=3, subset_size=6, generator=gen(19))
    assert float(whole) == pytest.approx(value, rel=1e-12)
    sub = kernel_distance(a, b, n_subsets=4, subset_size=4, generator=gen(20))
    assert torch.equal(sub, kernel_distance(a, b, n_subsets=4, subset_size=4, generator=gen(20)))
    with pytest.raises(ValueError, match="both n_subsets and subset_size"):
        kernel_distance(a, b, n_subsets=4)
    with pytest.raises(ValueError, match="generator"):
        kernel_distance(a, b, n_subsets=4, subset_size=4)
    with pytest.raises(ValueError, match="subset_size"):
        kernel_distance(a, b, n_subsets=4, subset_size=7, generator=gen(0))


def test_kernel_distance_of_one_distribution_averages_to_zero():
    """200 draws of two sets of 30 from N(0, I₄): the mean KD is within 4 SE of 0 (unbiased), while
    a mean shift of 0.5 in every feature gives a mean far above 0."""
    g = gen(21)
    same, shifted = [], []
    for _ in range(200):
        a, b = torch.randn(30, 4, generator=g, dtype=F64), torch.randn(30, 4, generator=g, dtype=F64)
        same.append(float(kernel_distance(a, b)))
        shifted.append(float(kernel_distance(a, b + 0.5)))
    same_t, shifted_t = torch.tensor(same), torch.tensor(shifted)
    assert abs(float(same_t.mean())) < 4 * float(same_t.std()) / math.sqrt(200)
    assert float(shifted_t.mean()) > 10 * float(shifted_t.std()) / math.sqrt(200)


# ----------------------------------------------------------------------------- k-NN precision and recall


def on_a_line(values: list[float]) -> torch.Tensor:
    return torch.tensor([[v, 0.0] for v in values], dtype=F64)


def test_knn_precision_recall_on_points_counted_by_hand():
    """Real 0, 1, …, 9; fake 1, 1.25, 20, 20.5 (dyadic: distances exact).
    k = 1: real radii 1; fake radii 0.25, 0.25, 0.5, 0.5. Fake 1 and 1.25 lie within 1 of a real point,
    20 and 20.5 do not: precision 2/4. Only the real 1 lies within 0.25 of a fake point: recall 1/10.
    k = 2: fake radii 19, 18.75, 18.75, 19.25 cover every real point: recall 1, precision unchanged."""
    real, fake = on_a_line([float(i) for i in range(10)]), on_a_line([1.0, 1.25, 20.0, 20.5])
    assert knn_precision_recall(real, fake, k=1) == (0.5, 0.1)
    assert knn_precision_recall(real, fake, k=2) == (0.5, 1.0)


def test_knn_precision_recall_of_identical_and_collapsed_samples():
    g = gen(22)
    real = torch.randn(50, 3, generator=g, dtype=F64)
    assert knn_precision_recall(real, real.clone()) == (1.0, 1.0)
    # Every fake sample is the real point 7: on the real manifold (precision 1); the fake radii are 0, so only
    # the real point 7 itself is covered (recall 1/50).
    collapsed = real[7].expand(20, 3).clone()
    assert knn_precision_recall(real, collapsed) == (1.0, 1 / 50)
    fake = 0.5 + 1.5 * torch.randn(40, 3, generator=g, dtype=F64)
    p, r = knn_precision_recall(real, fake)
    assert knn_precision_recall(fake, real) == (r, p)  # swapping the roles swaps the two
    assert 0.0 < p < 1.0 and 0.0 < r < 1.0
    with pytest.raises(ValueError, match="k \\+ 1"):
        knn_precision_recall(real, collapsed[:3], k=3)
    with pytest.raises(ValueError, match="feature dimension"):
        knn_precision_recall(real, fake[:, :2])


# ----------------------------------------------------------------------------- calibration


def gaussian_toy(b: int, s: int, shape: tuple[int, ...], spread: float, seed: int):
    """Per item and pixel a posterior N(m, σ²) with m ~ N(0, 4), σ ~ U(0.5, 2); the truth is one draw, the S
    samples are draws of N(m, (spread·σ)²): spread 1 is an exact sampler."""
    g = gen(seed)
    mean = 2.0 * torch.randn(b, *shape, generator=g, dtype=F64)
    sd = 0.5 + 1.5 * torch.rand(b, *shape, generator=g, dtype=F64)
    truth = mean + sd * torch.randn(b, *shape, generator=g, dtype=F64)
    samples = mean[:, None] + spread * sd[:, None] * torch.randn(b, s, *shape, generator=g, dtype=F64)
    return samples, truth


def test_mse_ratio_written_out():
    samples = torch.tensor([[[1.0, 2.0], [3.0, 0.0]], [[0.0, 0.0], [2.0, 2.0]]], dtype=F64)  # (B=2, S=2, 2)
    truth = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
    # item 0: single = ((1+1) + (9+1))/4 = 3, mean (2, 1) → of_mean = (4+0)/2 = 2
    # item 1: single = ((1+0) + (1+4))/4 = 1.5, mean (1, 1) → of_mean = (0+1)/2 = 0.5
    out = mse_ratio(samples, truth)
    assert out.single.tolist() == [3.0, 1.5] and out.of_mean.tolist() == [2.0, 0.5]
    assert out.ratio == 4.5 / 2.5 and out.per_item.tolist() == [1.5, 3.0]
    assert exact_mse_ratio(16) == 32 / 17 and exact_mse_ratio(1) == 1.0
    with pytest.raises(ValueError, match="truth must have shape"):
        mse_ratio(samples, truth[:1])


@pytest.mark.parametrize(("s", "b"), [(16, 200), (256, 40)])
def test_exact_sampler_is_calibrated_and_an_under_dispersed_one_is_not(s, b):
    """Gaussian toy, 8×8 pixels, independent everywhere.

    * Ratio: within 4 delta-method SEs, sd(single − R·of_mean)/(√B·mean of_mean), of 2S/(S + 1). With half
      the spread, E single = 1.25 tr Σ and E of_mean = (1 + 0.25/S) tr Σ: a ratio near 1.25, far below.
    * Coverage: (x − x̄)/(s√(1 + 1/S)) is t_{S−1}, so p_k = P(|t_{S−1}| ≤ k/√(1 + 1/S)) (0.653, 0.929 at
      S = 16; 0.682, 0.954 at 256, close to 0.6827, 0.9545); the count over B·64 independent pixels lies in
      the binomial 99.99 % band. Half the spread covers far less.
    * Ranks: every rank in {0..S} has probability 1/(S + 1); scipy's chi-square test keeps uniformity at
      level 10⁻⁴. Half the spread piles ranks at 0 and S (a U shape).
    """
    samples, truth = gaussian_toy(b, s, (8, 8), 1.0, seed=23 + s)
    out = mse_ratio(samples, truth)
    se = float((out.single - out.ratio * out.of_mean).std()) / (math.sqrt(b) * float(out.of_mean.mean()))
    assert abs(out.ratio - exact_mse_ratio(s)) < 4 * se
    narrow, _ = gaussian_toy(b, s, (8, 8), 0.5, seed=23 + s)
    narrow_ratio = mse_ratio(narrow, truth).ratio
    assert abs(narrow_ratio - 1.25 / (1 + 0.25 / s)) < 0.1 and narrow_ratio < exact_mse_ratio(s) - 10 * se

    pixels = b * 64
    for k in (1.0, 2.0):
        p_k = 2 * stats.t.cdf(k / math.sqrt(1 + 1 / s), s - 1) - 1
        low, high = binomial_band(pixels, p_k, 0.9999)
        assert low <= round(interval_coverage(samples, truth, k=k) * pixels) <= high
        assert interval_coverage(narrow, truth, k=k) < low / pixels - 0.1

    counts = rank_histogram(samples, truth, generator=gen(1))
    assert counts.shape == (s + 1,) and int(counts.sum()) == pixels
    assert stats.chisquare(counts.numpy()).pvalue > 1e-4
    narrow_counts = rank_histogram(narrow, truth, generator=gen(1)).double()
    expected = pixels / (s + 1)
    assert stats.chisquare(narrow_counts.numpy()).pvalue < 1e-12
    assert narrow_counts[0] > 3 * expected and narrow_counts[-1] > 3 * expected
    assert narrow_counts[s // 2] < expected


def test_masks_leave_out_the_background_and_ties_are_broken_at_random():
    """A background whose truth and samples are exactly 0: every background pixel is 'covered' (0 ≤ k·0);
    the mask restores the foreground's own coverage. Its ranks are all ties, spread uniformly at random."""
    s = 15
    samples, truth = gaussian_toy(60, s, (4, 8), 1.0, seed=40)
    samples[..., 4:], truth[..., 4:] = 0.0, 0.0  # the right half is background
    fg = truth != 0
    foreground = interval_coverage(samples[..., :4].contiguous(), truth[..., :4].contiguous())
    assert interval_coverage(samples, truth, mask=fg) == foreground
    assert interval_coverage(samples, truth, mask=fg[0] | True) == pytest.approx(0.5 * foreground + 0.5)
    column = torch.zeros(4, 8, dtype=torch.bool)
    column[:, :4] = True  # a (*x_shape) mask is broadcast over the items
    assert interval_coverage(samples, truth, mask=column) == foreground
    background = rank_histogram(samples, truth, mask=~column, generator=gen(41))
    assert int(background.sum()) == 60 * 16 and stats.chisquare(background.numpy()).pvalue > 1e-4
    both = rank_histogram(samples, truth, generator=gen(41))
    assert int(both.sum()) == 60 * 32
    for bad, match in ((fg.float(), "boolean"), (fg[:, :2], "mask must have shape"), (fg & False, "no pixel")):
        with pytest.raises(ValueError, match=match):
            interval_coverage(samples, truth, mask=bad)


def test_interval_coverage_without_a_mask_is_coverage_of_intervals():
    samples, truth = gaussian_toy(10, 8, (3, 5), 1.3, seed=42)
    reference = coverage_of_intervals(samples, truth, ks=(1.0, 2.0))
    for k in (1.0, 2.0):
        assert interval_coverage(samples, truth, k=k) == reference[k]
    with pytest.raises(ValueError, match="k must lie"):
        interval_coverage(samples, truth, k=0.0)


def test_rank_histogram_counted_by_hand():
    samples = torch.tensor([[[1.0, 5.0, 9.0], [2.0, 6.0, 10.0], [3.0, 7.0, 11.0]]], dtype=F64)  # (B=1, S=3, 3)
    truth = torch.tensor([[0.0, 6.5, 12.0]], dtype=F64)  # below all: 0; between 6 and 10: 2; above all: 3
    assert rank_histogram(samples, truth, generator=gen(0)).tolist() == [1, 0, 1, 1]
    assert rank_histogram(samples, truth, generator=gen(0), bins=2).tolist() == [1, 2]
    tied = torch.tensor([[0.0, 6.0, 12.0]], dtype=F64)  # 6 ties with one sample above one below: rank 1 or 2
    for seed in range(5):
        counts = rank_histogram(samples, tied, generator=gen(seed)).tolist()
        assert counts[0] == 1 and counts[3] == 1 and counts[1] + counts[2] == 1
    runs = torch.stack([rank_histogram(samples, tied, generator=gen(seed)) for seed in range(200)])
    low, high = binomial_band(200, 0.5, 0.999)  # a fair coin in 200 flips: 77..123
    assert low <= int(runs[:, 1].sum()) <= high
    with pytest.raises(ValueError, match="divide S \\+ 1"):
        rank_histogram(samples, truth, generator=gen(0), bins=3)
    with pytest.raises(ValueError, match="generator"):
        rank_histogram(samples, truth, generator=None)
