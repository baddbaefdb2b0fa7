"""Tests of cmmd.metrics against brute-force formulas, scikit-image, and exact distributions.

Statistical tolerances are 5 standard errors derived from the sample sizes; seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cmmd.metrics import (
    coverage_of_intervals,
    credible_region_coverage,
    energy_distance,
    measurement_residual,
    posterior_stats,
    psnr,
    ssim,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- energy distance


def brute_energy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()


def test_energy_distance_equals_brute_force_and_vanishes_on_equal_clouds():
    x = torch.randn(300, 4, generator=gen(0), dtype=F64)
    y = 0.5 + 1.3 * torch.randn(200, 4, generator=gen(1), dtype=F64)
    ed = energy_distance(x, y)
    assert ed.shape == () and float(ed) > 0.1
    torch.testing.assert_close(ed, brute_energy(x, y), rtol=1e-10, atol=1e-12)
    assert float(energy_distance(x, x)) == 0.0
    assert abs(float(energy_distance(x, x[torch.randperm(300, generator=gen(2))]))) < 1e-12
    with pytest.raises(ValueError, match="feature dimension"):
        energy_distance(x, y[:, :3])


# ----------------------------------------------------------------------------- posterior statistics


def test_posterior_stats_equal_torch_and_do_not_depend_on_chunks():
    samples = 3.0 * torch.randn(5, 40, 2, 6, 7, generator=gen(3), dtype=F64) + 2.0
    mean, std = posterior_stats(samples)
    assert mean.shape == std.shape == (5, 2, 6, 7)
    torch.testing.assert_close(mean, samples.mean(1), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(std, samples.std(1, correction=1), rtol=1e-12, atol=0)
    chunked = posterior_stats(samples, chunk_size=2)
    torch.testing.assert_close(chunked.mean, mean, rtol=0, atol=0)
    torch.testing.assert_close(chunked.std, std, rtol=0, atol=0)
    # Absolute, not normalised: for 3·N(0,1) samples E[std] = 3·c4(S), sd(std) = 3·sqrt(1 − c4²).
    n_s = samples.shape[1]
    c4 = math.sqrt(2 / (n_s - 1)) * math.exp(math.lgamma(n_s / 2) - math.lgamma((n_s - 1) / 2))
    assert abs(float(std.mean()) - 3 * c4) < 5 * 3 * math.sqrt((1 - c4**2) / std.numel())
    with pytest.raises(ValueError, match="S >= 2"):
        posterior_stats(samples[:, :1])
    with pytest.raises(ValueError, match="chunk_size"):
        posterior_stats(samples, chunk_size=0)


def test_interval_coverage_counts_exactly():
    # Samples ±1 for every entry: mean 0, unbiased std sqrt(2). Truths at 0.9, 1.1, 2.1, 2.9 and
    # 4.3 stds (either sign): 1 of 5 within 1 std, 2 within 2 stds, 4 within 3 stds.
    r2 = math.sqrt(2)
    truth = torch.tensor([[0.9 * r2, -1.1 * r2, 2.1 * r2, -2.9 * r2, 4.3 * r2]], dtype=F64)
    samples = torch.tensor([-1.0, 1.0], dtype=F64).reshape(1, 2, 1).expand(1, 2, 5)
    assert coverage_of_intervals(samples, truth) == {1: 1 / 5, 2: 2 / 5, 3: 4 / 5}


def test_interval_coverage_of_exact_gaussian_samples():
    b, s, d = 1_000, 400, 10
    g = gen(4)
    loc = torch.randn(b, 1, d, generator=g, dtype=F64)
    scale = torch.rand(b, 1, d, generator=g, dtype=F64) + 0.5
    samples = loc + scale * torch.randn(b, s, d, generator=g, dtype=F64)
    truth = (loc + scale * torch.randn(b, 1, d, generator=g, dtype=F64))[:, 0]
    cov = coverage_of_intervals(samples, truth, ks=(1, 2, 3))
    n = b * d  # independent entries
    for k, gauss in ((1, 0.682689), (2, 0.954500), (3, 0.997300)):
        # Exact: (truth − mean)/(std·sqrt(1 + 1/S)) ~ Student t with S − 1 degrees of freedom.
        exact = 1 - 2 * stats.t.sf(k / math.sqrt(1 + 1 / s), df=s - 1)
        se = math.sqrt(exact * (1 - exact) / n)
        assert abs(cov[k] - exact) < 5 * se, (k, cov[k], exact)
        # The Gaussian values, up to the known finite-S shift (< 0.3 SE here).
        assert abs(cov[k] - gauss) < 5 * se + abs(exact - gauss), (k, cov[k], gauss)
    # Power: samples half as spread as they should be cover far less.
    narrow = coverage_of_intervals(loc + 0.5 * (samples - loc), truth, ks=(1,))
    assert narrow[1] < 0.682689 - 20 * math.sqrt(0.68 * 0.32 / n)
    with pytest.raises(ValueError, match="truth must have shape"):
        coverage_of_intervals(samples, truth[:, :3])


# ----------------------------------------------------------------------------- HDR coverage


def test_credible_region_threshold_is_the_linear_quantile():
    ref = torch.arange(11, dtype=F64)  # (1 − 0.25) quantile = 7.5
    query = torch.tensor([7.0, 7.5, 8.0, 10.0], dtype=F64)
    assert credible_region_coverage(ref, query, [0.25]) == {0.25: 0.75}
    assert np.quantile(ref.numpy(), 0.75) == 7.5


@pytest.mark.parametrize("query_scale", [1.0, 0.7, 1.4])
def test_credible_region_coverage_gaussian(query_scale):
    # Reference p = N(0, I_2): log p(x) = −|x|²/2 − log 2π; its α-HDR is {|x|² <= χ²₂⁻¹(α)}.
    # Query points ~ N(0, c² I_2) fall inside with probability χ²₂(χ²₂⁻¹(α)/c²).
    m = q = 20_000
    g = gen(5 + int(10 * query_scale))
    ref_x = torch.randn(m, 2, generator=g, dtype=F64)
    query_x = query_scale * torch.randn(q, 2, generator=g, dtype=F64)
    log_p = lambda x: -0.5 * x.square().sum(1) - math.log(2 * math.pi)  # noqa: E731
    levels = [0.5, 0.9, 0.99]
    cov = credible_region_coverage(log_p(ref_x), log_p(query_x), levels)
    for a in levels:
        r2 = stats.chi2.ppf(a, df=2)
        exact = stats.chi2.cdf(r2 / query_scale**2, df=2)
        # SE: binomial over the query points, plus the estimated threshold: the quantile of |X|²
        # has SE sqrt(a(1−a)/M)/f(r²), which moves the coverage by f(r²/c²)/c² per unit.
        slope = stats.chi2.pdf(r2 / query_scale**2, df=2) / query_scale**2 / stats.chi2.pdf(r2, df=2)
        se = math.sqrt(exact * (1 - exact) / q + slope**2 * a * (1 - a) / m)
        assert abs(cov[a] - exact) < 5 * se, (a, cov[a], exact)
        if query_scale != 1.0:
            assert abs(exact - a) > 10 * se  # the test distinguishes calibrated from not


def test_credible_region_bad_inputs():
    ref = torch.zeros(10, dtype=F64)
    with pytest.raises(ValueError, match="levels"):
        credible_region_coverage(ref, ref, [1.0])
    with pytest.raises(ValueError, match="log_density_of_samples"):
        credible_region_coverage(ref[None], ref, [0.5])
    with pytest.raises(ValueError, match="log_density_of_points"):
        credible_region_coverage(ref, ref[None], [0.5])


# ----------------------------------------------------------------------------- PSNR / SSIM


@pytest.mark.parametrize("shape", [(3, 16, 12), (3, 1, 16, 12), (2, 3, 16, 12)])
def test_psnr_ssim_equal_skimage(shape):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ref = torch.rand(*shape, generator=gen(6))
    x = (ref + 0.1 * torch.randn(*shape, generator=gen(7))).clamp(0, 1)
    p, s = psnr(x, ref, data_range=1.0), ssim(x, ref, data_range=1.0)
    assert p.shape == s.shape == (shape[0],) and p.dtype == F64
    for i in range(shape[0]):
        xi, ri = x[i].numpy().astype(np.float64), ref[i].numpy().astype(np.float64)
        assert float(p[i]) == pytest.approx(peak_signal_noise_ratio(ri, xi, data_range=1.0), rel=1e-12)
        if len(shape) == 4 and shape[1] > 1:
            s_ref = structural_similarity(ri, xi, data_range=1.0, channel_axis=0)
        else:
            s_ref = structural_similarity(ri.reshape(shape[-2:]), xi.reshape(shape[-2:]), data_range=1.0)
        assert float(s[i]) == pytest.approx(s_ref, rel=1e-12)
    # PSNR from its definition, 10 log10(range²/MSE).
    mse = (x.double() - ref.double()).square().flatten(1).mean(1)
    torch.testing.assert_close(p, 10 * torch.log10(1.0 / mse), rtol=1e-10, atol=0)


def test_psnr_ssim_bad_inputs():
    x = torch.rand(2, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:, :8], data_range=1.0)
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, x, data_range=0.0)
    with pytest.raises(ValueError, match="7"):
        ssim(x[:, :5, :5], x[:, :5, :5], data_range=1.0)
    with pytest.raises(ValueError, match="x must have shape"):
        psnr(x[0, 0], x[0, 0], data_range=1.0)


# ----------------------------------------------------------------------------- residuals


def test_measurement_residual():
    y_pred = torch.randn(6, 3, 4, generator=gen(8), dtype=F64)
    y_obs = torch.randn(3, 4, generator=gen(9), dtype=F64)
    rms = measurement_residual(y_pred, y_obs)
    rel = measurement_residual(y_pred, y_obs.expand(6, 3, 4), relative=True)
    for i in range(6):
        r = (y_pred[i] - y_obs).numpy()
        assert float(rms[i]) == pytest.approx(np.sqrt(np.mean(r**2)), rel=1e-13)
        assert float(rel[i]) == pytest.approx(np.linalg.norm(r) / np.linalg.norm(y_obs.numpy()), rel=1e-13)
    # Observations y + σ ε of the exact y have RMS residual ≈ σ: with n entries the squared RMS is
    # σ²·χ²_n/n, so the RMS has SE ≈ σ/sqrt(2n).
    sigma, n = 0.1, 2_000
    obs = torch.randn(n, generator=gen(10), dtype=F64)
    noisy = obs + sigma * torch.randn(5, n, generator=gen(11), dtype=F64)
    assert bool(((measurement_residual(noisy, obs) - sigma).abs() < 5 * sigma / math.sqrt(2 * n)).all())
    with pytest.raises(ValueError, match="y_obs must have the shape"):
        measurement_residual(y_pred, y_obs[:2])
