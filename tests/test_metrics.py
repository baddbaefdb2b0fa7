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
    covariance_error,
    credible_region_coverage,
    high_frequency_energy,
    mean_error,
    measurement_residual,
    posterior_stats,
    psnr,
    sample_covariance,
    ssim,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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


# ----------------------------------------------------------------------------- moments of vector samples


def _correlated_samples(b: int, s: int, d: int, seed: int) -> torch.Tensor:
    g = gen(seed)
    mix = torch.randn(b, d, d, generator=g, dtype=F64)
    return torch.randn(b, s, d, generator=g, dtype=F64) @ mix + 3.0 * torch.randn(b, 1, d, generator=g, dtype=F64)


def test_sample_covariance_and_moment_errors_equal_numpy():
    samples = _correlated_samples(4, 37, 3, seed=20)
    mean = torch.randn(4, 3, generator=gen(21), dtype=F64)
    cov = torch.randn(4, 3, 3, generator=gen(22), dtype=F64)
    cov_hat, m_err, c_err = sample_covariance(samples), mean_error(samples, mean), covariance_error(samples, cov)
    assert cov_hat.shape == (4, 3, 3) and m_err.shape == c_err.shape == (4,)
    for b in range(4):
        x = samples[b].numpy()
        np_cov = np.cov(x, rowvar=False, ddof=1)
        # Entries of size ~10 from sums of 37 products: float64 round-off ~1e-14 relative.
        np.testing.assert_allclose(cov_hat[b].numpy(), np_cov, rtol=1e-12, atol=1e-12)
        expected_mean = np.linalg.norm(x.mean(0) - mean[b].numpy())
        expected_cov = np.linalg.norm(np_cov - cov[b].numpy()) / np.linalg.norm(cov[b].numpy())
        assert float(m_err[b]) == pytest.approx(expected_mean, rel=1e-12)
        assert float(c_err[b]) == pytest.approx(expected_cov, rel=1e-12)
    # The samples' own moments are errors of exactly 0; their transpose is not (the test can tell).
    assert torch.equal(covariance_error(samples, cov_hat), torch.zeros(4, dtype=F64))
    assert float(covariance_error(samples, cov_hat.transpose(1, 2) + torch.eye(3, dtype=F64)).min()) > 0
    assert torch.equal(mean_error(samples, samples.mean(1)), torch.zeros(4, dtype=F64))


def test_moment_errors_of_exact_gaussian_samples_are_monte_carlo_noise():
    """For S samples of N(m, C): E|mean error|² = tr C / S, and (C = I_d) E||Ĉ − I||_F² = (d² + d)/(S − 1)."""
    b, s, d = 400, 200, 3
    samples = torch.randn(b, s, d, generator=gen(23), dtype=F64)
    eye = torch.eye(d, dtype=F64).expand(b, d, d)
    m2 = mean_error(samples, torch.zeros(b, d, dtype=F64)).square()
    c2 = covariance_error(samples, eye).square() * d  # ||I||_F² = d
    # m2·S/d ~ χ²_d/d (variance 2/d); the 5-SE bands below hold m2 and c2 to about ±12 % of their means.
    assert abs(float(m2.mean()) * s / d - 1) < 5 * math.sqrt(2 / d / b)
    expected = (d * d + d) / (s - 1)
    assert abs(float(c2.mean()) / expected - 1) < 5 * float(c2.std()) / math.sqrt(b) / expected
    # Power: samples with twice the spread are far off.
    assert float((covariance_error(2 * samples, eye).square() * d).mean()) > 5 * expected


def test_moment_functions_bad_inputs():
    samples = torch.randn(2, 5, 3, dtype=F64)
    with pytest.raises(ValueError, match="S >= 2"):
        sample_covariance(samples[:, :1])
    with pytest.raises(ValueError, match="mean must have shape"):
        mean_error(samples, torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="cov must have shape"):
        covariance_error(samples, torch.zeros(2, 3, 4, dtype=F64))
    with pytest.raises(ValueError, match="zero matrix"):
        covariance_error(samples, torch.zeros(2, 3, 3, dtype=F64))


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


# ----------------------------------------------------------------------------- high-frequency energy


def test_high_frequency_energy_of_constant_ramp_and_checkerboard():
    # The 5-point Laplacian vanishes on affine images; dyadic values keep the arithmetic exact.
    i, j = torch.meshgrid(torch.arange(20, dtype=F64), torch.arange(15, dtype=F64), indexing="ij")
    assert float(high_frequency_energy(torch.full((2, 1, 20, 15), 0.75, dtype=F64))) == 0.0
    # Otherwise 4c − 4·c is off by at most a few roundings of 4c: squares below (8 eps c)².
    eps = torch.finfo(F64).eps
    assert 0.0 <= float(high_frequency_energy(torch.full((20, 15), 0.7, dtype=F64))) <= (8 * eps * 0.7) ** 2
    assert float(high_frequency_energy(3 * i - 2 * j + 5)) == 0.0
    # (−1)^(i+j): every neighbour has the opposite sign, Laplacian ±8, mean square 64.
    assert float(high_frequency_energy((-1.0) ** (i + j))) == 64.0


@pytest.mark.parametrize("k", [1, 3, 7])
def test_high_frequency_energy_of_sinusoids_matches_the_analytic_value(k):
    """u = a·sin(ω i + φ) with ω = 2πk/K over K = H − 2 interior rows: the Laplacian is 4 sin²(ω/2)·u and
    mean_I sin² = 1/2 over whole periods, so the energy is 8 a² sin⁴(ω/2). The same along columns; a batch of
    such images pools to the mean of their energies."""
    n_interior, a, phase = 24, 0.3, 0.4
    omega = 2 * math.pi * k / n_interior
    wave = a * torch.sin(omega * torch.arange(n_interior + 2, dtype=F64) + phase)
    image = wave[:, None].expand(n_interior + 2, 11)  # varies along the rows only
    expected = 8 * a**2 * math.sin(omega / 2) ** 4
    # Round-off: a few eps on Laplacians of size ≤ 4a; 1e-12 relative leaves a wide margin.
    assert float(high_frequency_energy(image)) == pytest.approx(expected, rel=1e-12)
    assert float(high_frequency_energy(wave[None, :].expand(9, n_interior + 2))) == pytest.approx(expected, rel=1e-12)
    batch = torch.stack([image, 2 * image])[:, None]  # (2, 1, H, W): energies e and 4e
    assert float(high_frequency_energy(batch)) == pytest.approx(2.5 * expected, rel=1e-12)


def test_high_frequency_energy_bad_inputs():
    with pytest.raises(ValueError, match="H, W >= 3"):
        high_frequency_energy(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="floating dtype"):
        high_frequency_energy(torch.zeros(4, 4, dtype=torch.int64))


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
