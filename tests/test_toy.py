"""Tests of cmmd.toy: the exact posterior of Gaussian mixtures under linear Gaussian observations.

References are independent of the implementation: self-normalised importance sampling (SNIS) from
the prior with numpy's random generator, the information form of Gaussian conditioning in numpy
(Bishop PRML eqs. 2.116-2.117, the library uses the gain form), and scipy's Gaussian densities.
Statistical tolerances are 5 standard errors derived from the sample sizes; seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cmmd.toy import (
    GaussianMixture,
    LinearGaussianProblem,
    mixture_2d,
    problem_first_coordinate,
    problem_full,
    problem_sum,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_mixture(k: int, d: int, seed: int) -> GaussianMixture:
    g = gen(seed)
    weights = torch.rand(k, generator=g, dtype=F64) + 0.2
    means = 1.5 * torch.randn(k, d, generator=g, dtype=F64)
    b = 0.5 * torch.randn(k, d, d, generator=g, dtype=F64)
    covs = b @ b.transpose(-1, -2) + 0.2 * torch.eye(d, dtype=F64)
    return GaussianMixture(weights / weights.sum(), means, covs)


def random_problem(d: int, n: int, sigma: float, seed: int) -> LinearGaussianProblem:
    a = torch.randn(n, d, generator=gen(seed + 1), dtype=F64)
    return LinearGaussianProblem(random_mixture(3, d, seed), a, sigma)


# ----------------------------------------------------------------------------- SNIS reference


def snis_reference(problem: LinearGaussianProblem, y: np.ndarray, n: int, seed: int) -> dict:
    """SNIS estimates of posterior mean, covariance, component probabilities, with delta-method SEs.

    Prior samples (x_i, label_i) drawn with numpy, weights w_i ∝ exp(−|y − A x_i|²/(2σ²)),
    normalised to wbar. For an estimate Σ wbar_i f_i, the asymptotic standard error is
    sqrt(Σ wbar_i² (f_i − estimate)²) (Owen, Monte Carlo theory, 2013, eq. 9.9).
    """
    rng = np.random.default_rng(seed)
    w = problem.prior.weights.numpy()
    means, covs = problem.prior.means.numpy(), problem.prior.covs.numpy()
    k, d = means.shape
    labels = rng.choice(k, size=n, p=w)
    x = np.empty((n, d))
    for j in range(k):
        sel = labels == j
        x[sel] = rng.multivariate_normal(means[j], covs[j], size=int(sel.sum()))
    a = problem.A.numpy()
    log_lik = -0.5 * ((y - x @ a.T) ** 2).sum(1) / problem.sigma**2
    wbar = np.exp(log_lik - log_lik.max())
    wbar /= wbar.sum()

    def estimate(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # f: (n, ...)
        est = np.tensordot(wbar, f, axes=1)
        se = np.sqrt(np.tensordot(wbar**2, (f - est) ** 2, axes=1))
        return est, se

    mean, mean_se = estimate(x)
    centred = x - mean
    cov, cov_se = estimate(centred[:, :, None] * centred[:, None, :])
    prob, prob_se = estimate((labels[:, None] == np.arange(k)).astype(float))
    return dict(mean=mean, mean_se=mean_se, cov=cov, cov_se=cov_se, prob=prob, prob_se=prob_se,
                ess=1.0 / (wbar**2).sum())


CASES = {
    # name: (problem factory, observation or None to draw one from the model)
    "d2_n2": (lambda: random_problem(2, 2, 0.5, seed=1), None),
    "d3_n2_nonsquare": (lambda: random_problem(3, 2, 0.4, seed=2), None),
    "bimodal_sum": (problem_sum, [0.7]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_posterior_matches_importance_sampling(case):
    factory, y_given = CASES[case]
    problem = factory()
    if y_given is None:
        _, y = problem.sample_joint(1, generator=gen(10))
        y = y[0]
    else:
        y = torch.tensor(y_given, dtype=F64)
    post = problem.posterior(y)
    ref = snis_reference(problem, y.numpy(), n=200_000, seed=20)
    assert ref["ess"] > 2_000, "too few effective samples for the asymptotic standard errors"

    mean, cov, prob = post.mean().numpy(), post.covariance().numpy(), post.weights.numpy()
    np.testing.assert_array_less(np.abs(mean - ref["mean"]), 5 * ref["mean_se"])
    np.testing.assert_array_less(np.abs(cov - ref["cov"]), 5 * ref["cov_se"])
    # The delta-method SE collapses for a component no weighted sample landed in: also allow the
    # binomial SE sqrt(p(1-p)/ESS) of the exact probability.
    prob_se = np.maximum(ref["prob_se"], np.sqrt(prob * (1 - prob) / ref["ess"]))
    np.testing.assert_array_less(np.abs(prob - ref["prob"]), 5 * prob_se + 1e-12)
    # Power: the data moved the distribution far beyond the tolerance, so a wrong
    # (e.g. prior-returning) posterior would fail.
    prior_mean = problem.prior.mean().numpy()
    assert np.max(np.abs(prior_mean - ref["mean"]) / ref["mean_se"]) > 20


def test_bimodal_problems_have_two_symmetric_modes():
    # problem_first_coordinate at y = 0: components at (0, ±0.7) explain y exactly; every other
    # component's mean is >= 5 predictive standard deviations away (by construction, see docstring).
    post = problem_first_coordinate().posterior(torch.zeros(1, dtype=F64))
    top = torch.topk(post.weights, 2)
    assert float(top.values.sum()) > 0.99
    torch.testing.assert_close(top.values[0], top.values[1], rtol=1e-12, atol=0)
    m0, m1 = post.means[top.indices]
    torch.testing.assert_close(m0, m1 * torch.tensor([1.0, -1.0], dtype=F64), rtol=0, atol=1e-12)
    assert abs(float(m0[1])) > 0.6
    # problem_sum: symmetric under x1 <-> x2 for every y.
    post = problem_sum().posterior(torch.tensor([0.7], dtype=F64))
    swapped = post.means.flip(-1)
    dist = torch.cdist(post.means, swapped)
    partner = dist.argmin(1)
    torch.testing.assert_close(post.weights, post.weights[partner], rtol=1e-10, atol=1e-300)
    assert float(post.weights.max()) < 0.5 + 1e-9  # no single component carries more than its mirror


def test_gaussian_case_equals_information_form_numpy():
    rng = np.random.default_rng(3)
    d, n, sigma = 3, 2, 0.3
    m = rng.normal(size=d)
    b = rng.normal(size=(d, d))
    s = b @ b.T + 0.5 * np.eye(d)
    a = rng.normal(size=(n, d))
    y = rng.normal(size=n)
    # Bishop PRML (2.116)-(2.117): Σ = (Λ + AᵀA/σ²)⁻¹, μ = Σ(Λm + Aᵀy/σ²), Λ = S⁻¹.
    lam = np.linalg.inv(s)
    cov_ref = np.linalg.inv(lam + a.T @ a / sigma**2)
    mean_ref = cov_ref @ (lam @ m + a.T @ y / sigma**2)
    prior = GaussianMixture([1.0], [m.tolist()], [s.tolist()])
    post = LinearGaussianProblem(prior, a.tolist(), sigma).posterior(torch.tensor(y))
    np.testing.assert_allclose(post.weights.numpy(), [1.0], rtol=1e-15)
    np.testing.assert_allclose(post.means[0].numpy(), mean_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(post.covs[0].numpy(), cov_ref, rtol=1e-9, atol=1e-12)


def test_posterior_weights_equal_scipy_evidence():
    problem = random_problem(3, 2, 0.4, seed=4)
    y = np.array([0.3, -1.2])
    w, m, s = (t.numpy() for t in (problem.prior.weights, problem.prior.means, problem.prior.covs))
    a, sig = problem.A.numpy(), problem.sigma
    log_ev = np.array([stats.multivariate_normal(a @ m[k], a @ s[k] @ a.T + sig**2 * np.eye(2)).logpdf(y)
                       for k in range(len(w))])
    ref = np.exp(np.log(w) + log_ev - np.logaddexp.reduce(np.log(w) + log_ev))
    np.testing.assert_allclose(problem.posterior(torch.tensor(y)).weights.numpy(), ref, rtol=1e-10)


def test_log_prob_equals_scipy():
    mix = random_mixture(4, 3, seed=5)
    x = torch.randn(7, 3, generator=gen(6), dtype=F64)
    comps = [stats.multivariate_normal(mix.means[k].numpy(), mix.covs[k].numpy()) for k in range(4)]
    ref = sum(float(mix.weights[k]) * comps[k].pdf(x.numpy()) for k in range(4))
    np.testing.assert_allclose(mix.log_prob(x).numpy(), np.log(ref), rtol=1e-10)
    assert mix.log_prob(x.reshape(7, 1, 3)).shape == (7, 1)


def grid_integral(mix: GaussianMixture) -> float:
    """Midpoint rule on a grid with spacing h = (smallest component std)/2, box = means ± 10 stds.

    Error (Poisson summation): aliasing <= sum_k exp(-2π² s²/h²) = exp(-8π²) ~ 1e-34 per
    component; truncation <= 2·P(|N(0,1)| > 10) ~ 3e-23. So the integral is 1 to rounding (~1e-12).
    """
    eig = torch.linalg.eigvalsh(mix.covs)
    h = float(eig.min().sqrt()) / 2
    sd_max = float(eig.max().sqrt())
    lo = mix.means.min(0).values - 10 * sd_max
    hi = mix.means.max(0).values + 10 * sd_max
    axes = [torch.arange(float(lo[i]) + h / 2, float(hi[i]), h, dtype=F64) for i in range(2)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    return float(mix.log_prob(grid).exp().sum()) * h * h


@pytest.mark.parametrize("which", ["posterior_sum", "prior_random"])
def test_log_prob_integrates_to_one(which):
    if which == "posterior_sum":
        mix = problem_sum().posterior(torch.tensor([0.7], dtype=F64))
    else:
        mix = random_mixture(3, 2, seed=7)
    assert abs(grid_integral(mix) - 1.0) < 1e-9


def test_posterior_sample_matches_posterior_moments():
    problem = random_problem(3, 2, 0.4, seed=8)
    _, y = problem.sample_joint(3, generator=gen(9))
    s = 40_000
    samples = problem.posterior_sample(y, s, generator=gen(11))
    assert samples.shape == (3, s, 3) and samples.dtype == F64
    for b in range(3):
        post = problem.posterior(y[b])
        mean, cov = post.mean(), post.covariance()
        x = samples[b]
        mean_hat = x.mean(0)
        assert bool(((mean_hat - mean).abs() < 5 * (cov.diagonal() / s).sqrt()).all())
        c = x - mean_hat
        prod = c[:, :, None] * c[:, None, :]
        cov_se = prod.std(0) / math.sqrt(s)
        assert bool(((prod.mean(0) - cov).abs() < 5 * cov_se).all())


def ks_pvalues(x: torch.Tensor, mix: GaussianMixture, directions: torch.Tensor) -> list[float]:
    """Kolmogorov-Smirnov p-values of the projections <v, x> against the exact projected mixture.

    <v, X> for X ~ sum_k w_k N(m_k, S_k) has CDF sum_k w_k Φ((t − <v, m_k>)/sqrt(vᵀ S_k v)).
    Under a correct sampler each p-value is uniform on [0, 1].
    """
    w = mix.weights.numpy()
    out = []
    for v in directions:
        loc = (mix.means @ v).numpy()
        scale = torch.einsum("i,kij,j->k", v, mix.covs, v).sqrt().numpy()
        cdf = lambda t: (w * stats.norm.cdf((np.asarray(t)[:, None] - loc) / scale)).sum(1)  # noqa: E731
        out.append(stats.kstest((x @ v).numpy(), cdf).pvalue)
    return out


DIRECTIONS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]], dtype=F64)


def test_posterior_sample_projected_distribution():
    # Two modes with very different covariances (a sampler that pairs a mode with the wrong
    # Cholesky factor keeps mean and covariance but fails here), and the bimodal book problem.
    covs = [[[0.05, 0.0], [0.0, 0.5]], [[0.5, 0.1], [0.1, 0.05]]]
    prior = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], covs)
    problems = [(LinearGaussianProblem(prior, [[0.0, 1.0]], 1.0), [[0.2], [-0.4]]),
                (problem_first_coordinate(), [[0.0], [0.49]])]
    for problem, ys in problems:
        y = torch.tensor(ys, dtype=F64)
        samples = problem.posterior_sample(y, 5_000, generator=gen(12))
        for b in range(y.shape[0]):
            post = problem.posterior(y[b])
            assert float(post.weights.max()) < 0.9  # both modes matter
            assert min(ks_pvalues(samples[b], post, DIRECTIONS)) > 1e-6


def test_prior_sample_and_joint_statistics():
    mix = random_mixture(4, 3, seed=15)
    n = 50_000
    x = mix.sample(n, generator=gen(13))
    mean, cov = mix.mean(), mix.covariance()
    # Numpy mixture moments, independently.
    w, m, s = mix.weights.numpy(), mix.means.numpy(), mix.covs.numpy()
    mu = w @ m
    np.testing.assert_allclose(mean.numpy(), mu, rtol=1e-12, atol=1e-14)
    cov_ref = sum(w[k] * (s[k] + np.outer(m[k] - mu, m[k] - mu)) for k in range(4))
    np.testing.assert_allclose(cov.numpy(), cov_ref, rtol=1e-12, atol=1e-14)
    assert bool(((x.mean(0) - mean).abs() < 5 * (cov.diagonal() / n).sqrt()).all())
    c = x - x.mean(0)
    prod = c[:, :, None] * c[:, None, :]
    assert bool(((prod.mean(0) - cov).abs() < 5 * prod.std(0) / math.sqrt(n)).all())
    directions = torch.cat([torch.eye(3, dtype=F64), torch.full((1, 3), 3**-0.5, dtype=F64)])
    assert min(ks_pvalues(x, mix, directions)) > 1e-6
    problem = problem_full()
    x, y = problem.sample_joint(n, generator=gen(14))
    noise = (y - x @ problem.A.T) / problem.sigma  # should be N(0, I_2)
    assert bool((noise.mean(0).abs() < 5 / math.sqrt(n)).all())
    assert bool(((noise.var(0) - 1).abs() < 5 * math.sqrt(2 / n)).all())  # SE of a sample variance


def test_same_seed_same_numbers_and_global_rng_untouched():
    problem = problem_sum()
    y = torch.tensor([[0.7], [0.0]], dtype=F64)
    state = torch.get_rng_state()
    draws = {
        "sample": lambda g: problem.prior.sample(100, generator=g),
        "joint": lambda g: torch.cat(problem.sample_joint(100, generator=g), 1),
        "post": lambda g: problem.posterior_sample(y, 100, generator=g),
    }
    for name, draw in draws.items():
        assert torch.equal(draw(gen(0)), draw(gen(0))), name
        assert not torch.equal(draw(gen(0)), draw(gen(1))), name
    assert torch.equal(torch.get_rng_state(), state)


def test_dtype_follows_inputs():
    mix = GaussianMixture(
        torch.tensor([0.5, 0.5]), torch.tensor([[0.0, 0.0], [1.0, 1.0]]), 0.1 * torch.eye(2).expand(2, 2, 2)
    )
    assert mix.sample(5, generator=gen(0)).dtype == torch.float32
    problem = LinearGaussianProblem(mix, [[1.0, 0.0]], 0.1)
    assert problem.A.dtype == torch.float32
    y = torch.tensor([0.3])
    post = problem.posterior(y)
    assert post.means.dtype == torch.float32 and post.weights.dtype == torch.float32
    assert problem.posterior_sample(y[None], 4, generator=gen(0)).dtype == torch.float32
    assert GaussianMixture([1.0], [[0.0]], [[[1.0]]]).means.dtype == F64


GOOD = dict(weights=[0.5, 0.5], means=[[0.0, 0.0], [1.0, 1.0]], covs=[np.eye(2).tolist()] * 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(GOOD, weights=[0.5, 0.6]), "weights must sum to 1"),
        (dict(GOOD, weights=[1.5, -0.5]), "weights must be non-negative"),
        (dict(GOOD, means=[[0.0, 0.0]]), "means must have shape"),
        (dict(GOOD, covs=[np.eye(3).tolist()] * 2), "covs must have shape"),
        (dict(GOOD, covs=[[[1.0, 2.0], [2.0, 1.0]]] * 2), "covs must be symmetric positive definite"),
        (dict(GOOD, covs=[[[1.0, 0.5], [0.0, 1.0]]] * 2), "covs must be symmetric"),
        (dict(GOOD, means=[[0.0, float("nan")], [1.0, 1.0]]), "means contains NaN"),
    ],
)
def test_bad_mixture_names_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_bad_problem_inputs_name_argument():
    prior = GaussianMixture(**GOOD)
    with pytest.raises(ValueError, match="A must have shape"):
        LinearGaussianProblem(prior, [[1.0, 0.0, 0.0]], 0.1)
    for sigma in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="sigma must be"):
            LinearGaussianProblem(prior, [[1.0, 0.0]], sigma)
    with pytest.raises(ValueError, match="prior must be"):
        LinearGaussianProblem("prior", [[1.0, 0.0]], 0.1)
    problem = LinearGaussianProblem(prior, [[1.0, 0.0]], 0.1)
    with pytest.raises(ValueError, match=r"y must have shape \(n,\)"):
        problem.posterior(torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match=r"y must have shape \(n,\)"):
        problem.posterior(torch.zeros(3, 1, dtype=F64))
    with pytest.raises(ValueError, match=r"y must have shape \(B, n\)"):
        problem.posterior_sample(torch.zeros(1, dtype=F64), 5)
    with pytest.raises(ValueError, match="y has dtype"):
        problem.posterior(torch.zeros(1, dtype=torch.float32))
    with pytest.raises(ValueError, match="n_samples must be"):
        problem.posterior_sample(torch.zeros(1, 1, dtype=F64), 0)
    with pytest.raises(ValueError, match="x must have shape"):
        problem.observe(torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="x must have shape"):
        prior.log_prob(torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="n must be"):
        prior.sample(0)


def test_ready_made_problems():
    mix = mixture_2d()
    assert (mix.n_components, mix.dim) == (8, 2)
    # The symmetries that make the posteriors bimodal (docstrings): the set of components is
    # invariant under x1 <-> x2 and under x2 -> -x2.
    for t in (torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64), torch.diag(torch.tensor([1.0, -1.0], dtype=F64))):
        means, covs = mix.means @ t.T, t @ mix.covs @ t.T
        match = torch.cdist(means, mix.means).argmin(1)
        torch.testing.assert_close(means, mix.means[match], rtol=0, atol=1e-12)
        torch.testing.assert_close(covs, mix.covs[match], rtol=0, atol=1e-12)
    # All components inside [-1, 1]^2 by more than 1 std.
    sd = mix.covs.diagonal(dim1=-2, dim2=-1).sqrt()
    assert bool(((mix.means.abs() + sd) < 1).all())
    for factory, n in ((problem_sum, 1), (problem_first_coordinate, 1), (problem_full, 2)):
        problem = factory()
        assert (problem.dim, problem.obs_dim) == (2, n)
        assert problem_sum(sigma=0.2, dtype=torch.float32).A.dtype == torch.float32
