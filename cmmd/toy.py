"""Gaussian-mixture priors with linear Gaussian forward models and their exact posteriors.

The toy problems of the book: a prior :math:`P_X = \\sum_k w_k \\mathcal N(m_k, S_k)` on
:math:`\\mathbb R^d` and an observation :math:`y = A x + \\sigma \\varepsilon`,
:math:`\\varepsilon \\sim \\mathcal N(0, I_n)`, :math:`A \\in \\mathbb R^{n \\times d}`.
The posterior is again a Gaussian mixture (standard Gaussian conditioning, Bishop, *Pattern
Recognition and Machine Learning*, §2.3.3, eqs. 2.113–2.117, written in the equivalent
"Kalman gain" form). With :math:`C_k = A S_k A^\\top + \\sigma^2 I_n`:

.. math::

    w_k(y) &\\propto w_k \\, \\mathcal N(y;\\, A m_k,\\, C_k), \\\\
    m_k(y) &= m_k + S_k A^\\top C_k^{-1} (y - A m_k), \\\\
    S_k(y) &= S_k - S_k A^\\top C_k^{-1} A S_k .

Everything is computed with Cholesky factors and triangular solves; mixture weights are
handled in log space. Dtype and device follow the inputs; random functions take a keyword
``generator`` and never touch the global random state.

Ready-made 2D problems (:func:`mixture_2d` and the ``problem_*`` functions) give posteriors
that are bimodal for many observations; see their docstrings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cmmd._checks import check_floating, check_positive_int

__all__ = [
    "GaussianMixture",
    "LinearGaussianProblem",
    "ring_mixture",
    "mixture_2d",
    "problem_sum",
    "problem_first_coordinate",
    "problem_full",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _as_tensor(name: str, value, *, like: Tensor | None) -> Tensor:
    """Return ``value`` as a tensor; Python lists get the dtype/device of ``like`` (float64 if none)."""
    if isinstance(value, Tensor):
        return value
    dtype = like.dtype if like is not None else torch.float64
    device = like.device if like is not None else None
    try:
        return torch.as_tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a tensor or a nested list of numbers: {err}") from err


def _check_same_kind(name: str, t: Tensor, ref_name: str, ref: Tensor) -> None:
    """Raise unless ``t`` has the dtype and device of ``ref``."""
    if t.dtype != ref.dtype:
        raise ValueError(
            f"{name} has dtype {t.dtype} but {ref_name} has {ref.dtype}; convert with .to({ref.dtype})"
        )
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; move both to one device")


def _sqrt_eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps ** 0.5


def _checked_cholesky(name: str, covs: Tensor) -> Tensor:
    """Cholesky factors of the (K, d, d) matrices ``covs``; raise naming ``name`` if one is not PD."""
    chol, info = torch.linalg.cholesky_ex(covs)
    bad = torch.nonzero(info).flatten().tolist()
    if bad:
        raise ValueError(
            f"{name} must be symmetric positive definite, but component(s) {bad} are not; "
            f"add a small multiple of the identity to them"
        )
    return chol


def _gaussian_log_density(diff: Tensor, chol: Tensor) -> Tensor:
    """log N(diff; 0, L Lᵀ) for diff (..., K, d) and Cholesky factors chol (K, d, d); returns (..., K)."""
    z = torch.linalg.solve_triangular(chol, diff.unsqueeze(-1), upper=False).squeeze(-1)
    half_log_det = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * z.square().sum(-1) - half_log_det - 0.5 * diff.shape[-1] * _LOG_2PI


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Mixture :math:`\\sum_k w_k \\mathcal N(m_k, S_k)` on :math:`\\mathbb R^d`.

    Args:
        weights: (K,) non-negative, summing to 1 (up to the square root of the dtype's epsilon).
        means: (K, d).
        covs: (K, d, d), symmetric positive definite.

    Tensors keep their dtype and device (all three must agree); nested Python lists become
    float64 tensors (or take the dtype/device of a tensor given among the three).
    """

    weights: Tensor
    means: Tensor
    covs: Tensor
    _chol: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        given = [v for v in (self.weights, self.means, self.covs) if isinstance(v, Tensor)]
        like = given[0] if given else None
        weights = _as_tensor("weights", self.weights, like=like)
        means = _as_tensor("means", self.means, like=like)
        covs = _as_tensor("covs", self.covs, like=like)
        self._validate(weights, means, covs)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covs", covs)
        object.__setattr__(self, "_chol", _checked_cholesky("covs", covs))

    @staticmethod
    def _validate(weights: Tensor, means: Tensor, covs: Tensor) -> None:
        for name, t in (("weights", weights), ("means", means), ("covs", covs)):
            check_floating(name, t)
        _check_same_kind("means", means, "weights", weights)
        _check_same_kind("covs", covs, "weights", weights)
        if weights.ndim != 1:
            raise ValueError(f"weights must have shape (K,), got {tuple(weights.shape)}")
        k = weights.shape[0]
        if means.ndim != 2 or means.shape[0] != k:
            raise ValueError(f"means must have shape (K, d) = ({k}, d) to match weights, got {tuple(means.shape)}")
        d = means.shape[1]
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape (K, d, d) = ({k}, {d}, {d}), got {tuple(covs.shape)}")
        if bool((weights < 0).any()):
            raise ValueError("weights must be non-negative")
        tol = _sqrt_eps(weights.dtype)
        total = float(weights.sum())
        if abs(total - 1.0) > tol:
            raise ValueError(f"weights must sum to 1, got {total:.10g}; divide them by their sum")
        asym = (covs - covs.transpose(-1, -2)).abs().amax()
        if float(asym) > tol * float(covs.abs().amax()):
            raise ValueError("covs must be symmetric; use (S + S.transpose(-1, -2)) / 2")

    @property
    def n_components(self) -> int:
        """Number of components K."""
        return self.weights.shape[0]

    @property
    def dim(self) -> int:
        """Dimension d."""
        return self.means.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def device(self) -> torch.device:
        return self.means.device

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples, shape (n, d): a component k ~ w, then m_k + L_k z, z ~ N(0, I_d)."""
        check_positive_int("n", n)
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        return self.means[idx] + torch.einsum("nij,nj->ni", self._chol[idx], z)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density :math:`\\log \\sum_k w_k \\mathcal N(x; m_k, S_k)` of x (..., d); returns (...)."""
        check_floating("x", x)
        _check_same_kind("x", x, "the mixture's means", self.means)
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., d) with d = {self.dim}, got {tuple(x.shape)}")
        comp = _gaussian_log_density(x.unsqueeze(-2) - self.means, self._chol)
        return torch.logsumexp(comp + self.weights.log(), dim=-1)

    def mean(self) -> Tensor:
        """Mixture mean :math:`\\sum_k w_k m_k`, shape (d,)."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance :math:`\\sum_k w_k (S_k + m_k m_k^\\top) - \\mu \\mu^\\top`, shape (d, d)."""
        mu = self.mean()
        centred = self.means - mu
        second = self.covs + centred.unsqueeze(-1) * centred.unsqueeze(-2)
        return torch.einsum("k,kij->ij", self.weights, second)


@dataclass(frozen=True, eq=False)
class LinearGaussianProblem:
    """Prior ``prior`` on R^d and observation :math:`y = A x + \\sigma \\varepsilon`, ε ~ N(0, I_n).

    Args:
        prior: the Gaussian mixture prior of x.
        A: (n, d) forward matrix (a nested list becomes a tensor of the prior's dtype/device).
        sigma: noise standard deviation, > 0.
    """

    prior: GaussianMixture
    A: Tensor
    sigma: float

    def __post_init__(self) -> None:
        if not isinstance(self.prior, GaussianMixture):
            raise ValueError(f"prior must be a GaussianMixture, got {type(self.prior).__name__}")
        A = _as_tensor("A", self.A, like=self.prior.means)
        check_floating("A", A)
        _check_same_kind("A", A, "the prior's means", self.prior.means)
        if A.ndim != 2 or A.shape[1] != self.prior.dim:
            raise ValueError(
                f"A must have shape (n, d) with d = {self.prior.dim} (the prior's dimension), got {tuple(A.shape)}"
            )
        sigma = float(self.sigma)
        if not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma must be a finite number > 0, got {self.sigma!r}")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "sigma", sigma)

    @property
    def dim(self) -> int:
        """Dimension d of x."""
        return self.prior.dim

    @property
    def obs_dim(self) -> int:
        """Dimension n of y."""
        return self.A.shape[0]

    def observe(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Noisy observations :math:`y = A x + \\sigma\\varepsilon` of x (N, d); returns (N, n)."""
        check_floating("x", x)
        _check_same_kind("x", x, "A", self.A)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (N, d) with d = {self.dim}, got {tuple(x.shape)}")
        noise = torch.randn(x.shape[0], self.obs_dim, generator=generator, dtype=x.dtype, device=x.device)
        return x @ self.A.T + self.sigma * noise

    def sample_joint(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` pairs (x, y) ~ P_{X,Y}: x (n, d) from the prior, y (n, n_obs) = observe(x)."""
        x = self.prior.sample(n, generator=generator)
        return x, self.observe(x, generator=generator)

    def _check_y(self, y: Tensor, *, batched: bool) -> None:
        check_floating("y", y)
        _check_same_kind("y", y, "A", self.A)
        shape = "(B, n)" if batched else "(n,)"
        if y.ndim != (2 if batched else 1) or y.shape[-1] != self.obs_dim:
            hint = "" if batched else "; for a batch of observations use posterior_sample"
            raise ValueError(f"y must have shape {shape} with n = {self.obs_dim}, got {tuple(y.shape)}{hint}")

    def _condition(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Posterior parameters for y (B, n): log-weights (B, K), means (B, K, d), covs (K, d, d).

        With C_k = L_k L_kᵀ and W_k = L_k⁻¹ A S_k, u_k = L_k⁻¹ (y − A m_k):
        m_k(y) = m_k + W_kᵀ u_k, S_k(y) = S_k − W_kᵀ W_k, log N(y; A m_k, C_k) from |u_k|² and L_k.
        The posterior covariances do not depend on y.
        """
        prior, A = self.prior, self.A
        eye = torch.eye(self.obs_dim, dtype=A.dtype, device=A.device)
        AS = A @ prior.covs  # (K, n, d)
        chol_c = torch.linalg.cholesky(AS @ A.T + self.sigma**2 * eye)  # (K, n, n); PD since sigma > 0
        W = torch.linalg.solve_triangular(chol_c, AS, upper=False)  # (K, n, d)
        covs = prior.covs - W.transpose(-1, -2) @ W
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        resid = y.unsqueeze(-2) - prior.means @ A.T  # (B, K, n)
        u = torch.linalg.solve_triangular(chol_c, resid.unsqueeze(-1), upper=False)  # (B, K, n, 1)
        half_log_det = torch.diagonal(chol_c, dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        log_evidence = -0.5 * u.square().sum((-2, -1)) - half_log_det - 0.5 * self.obs_dim * _LOG_2PI
        means = prior.means + (W.transpose(-1, -2) @ u).squeeze(-1)  # (B, K, d)
        log_w = prior.weights.log() + log_evidence
        return log_w - torch.logsumexp(log_w, dim=-1, keepdim=True), means, covs

    def posterior(self, y: Tensor) -> GaussianMixture:
        """Exact posterior :math:`P_{X|Y=y}` for ONE observation y of shape (n,) (see module docstring)."""
        self._check_y(y, batched=False)
        log_w, means, covs = self._condition(y.unsqueeze(0))
        return GaussianMixture(log_w[0].exp(), means[0], covs)

    def posterior_sample(
        self, y: Tensor, n_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Exact posterior samples for a batch of observations y (B, n); returns (B, n_samples, d)."""
        self._check_y(y, batched=True)
        check_positive_int("n_samples", n_samples)
        log_w, means, covs = self._condition(y)
        chol = _checked_cholesky("posterior covariances", covs)
        idx = torch.multinomial(log_w.exp(), n_samples, replacement=True, generator=generator)  # (B, S)
        z = torch.randn(y.shape[0], n_samples, self.dim, generator=generator, dtype=y.dtype, device=y.device)
        chosen = torch.gather(means, 1, idx.unsqueeze(-1).expand(-1, -1, self.dim))
        return chosen + torch.einsum("bsij,bsj->bsi", chol[idx], z)


# ----------------------------------------------------------------------------- ready-made 2D problems


def ring_mixture(
    n_components: int = 8,
    *,
    radius: float = 0.7,
    tangent_std: float = 0.1,
    radial_std: float = 0.04,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> GaussianMixture:
    """Equal-weight 2D Gaussians at angles 2πk/K on a circle, elongated along the circle.

    Component k has mean r(cos θ_k, sin θ_k), θ_k = 2πk/K, and covariance
    R_k diag(radial_std², tangent_std²) R_kᵀ with R_k the rotation by θ_k.
    """
    check_positive_int("n_components", n_components)
    if radius < 0 or tangent_std <= 0 or radial_std <= 0:
        raise ValueError("radius must be >= 0 and tangent_std, radial_std must be > 0")
    theta = 2 * math.pi * torch.arange(n_components, dtype=dtype, device=device) / n_components
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (K, 2, 2)
    diag = torch.tensor([radial_std**2, tangent_std**2], dtype=dtype, device=device)
    covs = rot @ torch.diag_embed(diag.expand(n_components, 2)) @ rot.transpose(-1, -2)
    covs = 0.5 * (covs + covs.transpose(-1, -2))
    weights = torch.full((n_components,), 1.0 / n_components, dtype=dtype, device=device)
    return GaussianMixture(weights, radius * torch.stack([c, s], -1), covs)


def mixture_2d(*, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> GaussianMixture:
    """The book's 2D prior: 8 equal-weight Gaussians on the circle of radius 0.7.

    Tangential std 0.1, radial std 0.04, so all mass lies in about [-0.95, 0.95]². The mixture is
    symmetric under x1 ↔ x2, x1 ↔ −x1 and x2 ↔ −x2, which makes posteriors bimodal below.
    """
    return ring_mixture(8, dtype=dtype, device=device)


def _problem(A: list[list[float]], sigma: float, dtype: torch.dtype, device) -> LinearGaussianProblem:
    prior = mixture_2d(dtype=dtype, device=device)
    return LinearGaussianProblem(prior, torch.tensor(A, dtype=dtype, device=device), sigma)


def problem_sum(
    sigma: float = 0.1, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> LinearGaussianProblem:
    """y = x1 + x2 + σε (n = 1) with the prior :func:`mixture_2d`.

    Bimodal/multimodal posteriors: the prior is symmetric under x1 ↔ x2 and so is the likelihood,
    so every posterior is mirror-symmetric about the diagonal: e.g. for y = 0.7 two modes near
    (0.7, 0) and (0, 0.7) carry 97% of the mass (a small third one sits on the diagonal), for
    y = 0 two modes near ±(0.49, −0.49). Only near y = ±0.99 the single component on the
    diagonal dominates and the posterior is unimodal.
    """
    return _problem([[1.0, 1.0]], sigma, dtype, device)


def problem_first_coordinate(
    sigma: float = 0.05, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> LinearGaussianProblem:
    """y = x1 + σε (n = 1) with the prior :func:`mixture_2d`.

    Bimodal posteriors: prior and likelihood are symmetric under x2 ↔ −x2, so the posterior has
    two mirror-image modes (e.g. near (0, ±0.7) for y = 0, near (0.49, ±0.49) for y = 0.49),
    except near y = ±0.7 where the single component on the x1-axis dominates.
    """
    return _problem([[1.0, 0.0]], sigma, dtype, device)


def problem_full(
    sigma: float = 0.3, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> LinearGaussianProblem:
    """y = x + σε (n = 2) with the prior :func:`mixture_2d`.

    The whole of x is observed, but the noise (0.3) is comparable to the distance between
    neighbouring components (0.54): posteriors are mostly dominated by the one or two
    components nearest to y, not symmetric, and rarely clearly bimodal.
    """
    return _problem([[1.0, 0.0], [0.0, 1.0]], sigma, dtype, device)
