# %% tags=["remove-cell"]
# Colab only: install cmmd with what the chapters import (hidden in the book; does nothing elsewhere).
# Long runs on Colab: keep the checkpoints on Google Drive, so that a disconnect loses nothing:
#     from google.colab import drive
#     drive.mount("/content/drive")
# then set checkpoint_dir = "/content/drive/MyDrive/cmmd-checkpoints" in the parameters cell below and,
# after a disconnect, run all cells again: every fit continues from its last finished network.
import importlib
import subprocess
import sys

if "google.colab" in sys.modules:
    PACKAGE = "cmmd[colab] @ git+https://github.com/cmmd-companion/cmmd@main"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)
    importlib.invalidate_caches()

# %% tags=["parameters", "remove-cell"]
profile = "cpu"
device = "auto"
seed = 0
results_path = ""

# %% [markdown]
# # 1. The sliced negative-distance MMD
#
# **What this chapter reproduces.** The building blocks on which the paper
# {cite:p}`hagemann2024posterior` rests: the maximum mean discrepancy with the negative
# distance kernel, its computation by slicing and sorting from the companion paper
# {cite:p}`hertrich2024generative`, and the MMD particle flows, plain and conditional, whose
# Wasserstein-gradient-flow property the paper proves (its Section 3). Every statement is
# followed by a numerical check. The paper reports no table for these facts: the ledger rows of
# this chapter are our own measurements, compared with the theory where it gives a number.

# %% tags=["hide-input"]
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from cmmd import (
    conditional_mmd_flow,
    mmd2,
    mmd2_1d,
    mmd2_grad,
    mmd2_grad_1d,
    mmd_flow,
    sliced_factor,
    sliced_mmd2,
    sliced_mmd2_grad,
)
from cmmd.book.kit import Chapter
from cmmd.energy import brute_force_mmd2
from cmmd.runtime import timed

# Sizes of every experiment in this chapter; `paper` means "larger, for a GPU": the paper
# has no table for these checks.
PROFILES = {
    "smoke": dict(
        dims=[1, 2, 64], n_points=100, slice_projections=50, slice_repeats=4,
        err_dims=[2, 64], err_projections=[10, 100], err_points=100, err_repeats=2,
        time_n=[100, 300, 1000], time_exact_max=1000, time_fit_min=100,
        time_dim=16, time_projections=50, time_repeat=1,
        flow_n=200, flow_steps=30, flow_projections=50, cond_n=200, cond_steps=30,
    ),
    "cpu": dict(
        dims=[1, 2, 3, 8, 32, 128, 784, 3072], n_points=300,
        slice_projections=500, slice_repeats=20,
        err_dims=[2, 16, 128, 784, 3072], err_projections=[10, 30, 100, 300, 1000, 3000],
        err_points=200, err_repeats=4,
        time_n=[100, 300, 1000, 3000, 10_000, 30_000, 100_000], time_exact_max=10_000,
        time_fit_min=1000, time_dim=16, time_projections=100, time_repeat=3,
        flow_n=600, flow_steps=300, flow_projections=100, cond_n=600, cond_steps=300,
    ),
    "paper": dict(
        dims=[1, 2, 3, 8, 32, 128, 784, 3072, 12_288], n_points=1000,
        slice_projections=1000, slice_repeats=100,
        err_dims=[2, 16, 128, 784, 3072],
        err_projections=[10, 30, 100, 300, 1000, 3000, 10_000],
        err_points=1000, err_repeats=10,
        time_n=[1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000],
        time_exact_max=100_000, time_fit_min=10_000,
        time_dim=16, time_projections=500, time_repeat=3,
        flow_n=2000, flow_steps=1000, flow_projections=500, cond_n=2000, cond_steps=1000,
    ),
}
chapter = Chapter.start(profile, device, seed, settings=PROFILES, grid=True)
# rng(k): the k-th random stream of the chapter, one per experiment (seeded 1000 * seed + k)
cfg, dev, rng = chapter.settings, chapter.device, chapter.generator
F64 = dict(device=dev, dtype=torch.float64)


def two_clouds(n: int, d: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, I_d) and y ~ N(e_1, 1.5² I_d), n points each, float64."""
    x = torch.randn(n, d, generator=g, **F64)
    y = 1.5 * torch.randn(n, d, generator=g, **F64)
    y[:, 0] += 1.0
    return x, y

# %% [markdown]
# ## The MMD with the negative distance kernel
#
# For probability measures $\mu, \nu$ on $\mathbb R^d$ with finite first moments and the kernel
# $K(x, y) = -\|x - y\|$, the squared maximum mean discrepancy {cite:p}`gretton2012kernel` is
#
# $$
# \mathrm{MMD}_K^2(\mu, \nu) = \tfrac12 \iint K \,\mathrm d(\mu - \nu)\,\mathrm d(\mu - \nu)
# = \mathbb E\|X - Y\| - \tfrac12 \mathbb E\|X - X'\| - \tfrac12 \mathbb E\|Y - Y'\|,
# $$
#
# with independent $X, X' \sim \mu$ and $Y, Y' \sim \nu$: half the *energy distance*
# {cite:p}`szekely2013energy`. The kernel is only conditionally positive definite, yet
# $\mathrm{MMD}_K$ is a metric on these measures {cite:p}`sejdinovic2013equivalence`. Unlike a
# Gaussian kernel it has no bandwidth to choose, and it inherits the symmetries of the
# Euclidean distance: it is invariant under translations and rotations applied to both
# measures and positively 1-homogeneous,
# $\mathrm{MMD}_K^2(a_\#\mu, a_\#\nu) = |a|\,\mathrm{MMD}_K^2(\mu, \nu)$ for the scaling
# $x \mapsto a x$. For empirical measures of $x_1, \dots, x_N$ and $p_1, \dots, p_M$,
#
# $$
# F(x) = \frac{1}{NM}\sum_{i,k}\|x_i - p_k\| - \frac{1}{2N^2}\sum_{i,j}\|x_i - x_j\|
#        - \frac{1}{2M^2}\sum_{k,l}\|p_k - p_l\|
# $$
#
# costs $O((N+M)^2 d)$ to evaluate exactly (`cmmd.mmd2`). The properties, on two samples in
# $\mathbb R^5$:

# %% tags=["nbval-check-output"]
g = rng(1)
x, y = two_clouds(300, 5, g)
y = y[:200]
rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, **F64))
shift = torch.randn(5, generator=g, **F64)
value = float(mmd2(x, y))


def close(a: torch.Tensor, b: float) -> bool:
    return math.isclose(float(a), b, rel_tol=1e-9)


checks = {
    "MMD²(μ, μ) = 0": abs(float(mmd2(x, x))) < 1e-12,
    "MMD²(μ, ν) > 0 for μ ≠ ν": value > 0,
    "symmetric": close(mmd2(y, x), value),
    "translation invariant": close(mmd2(x + shift, y + shift), value),
    "rotation invariant": close(mmd2(x @ rotation, y @ rotation), value),
    "1-homogeneous (a = -3)": close(mmd2(-3 * x, -3 * y), 3 * value),
}
for name, ok in checks.items():
    print(f"{name:28s} {ok}")

# %% [markdown]
# ## The slicing theorem
#
# ```{prf:theorem} Slicing (from the companion paper)
# :label: thm-slicing
# :nonumber:
#
# ({cite:t}`hertrich2024generative`) Let $k(s, t) = -|s - t|$ on $\mathbb R$ and
# $P_\xi(x) = \langle \xi, x\rangle$. For probability measures $\mu, \nu$ on $\mathbb R^d$ with
# finite first moments,
#
# $$
# \mathrm{MMD}_K^2(\mu, \nu) = c_d\, \mathbb E_{\xi \sim \mathcal U(\mathbb S^{d-1})}
#   \big[\mathrm{MMD}_k^2(P_{\xi\#}\mu, P_{\xi\#}\nu)\big],
# $$
#
# with the constant
#
# $$
# c_d = \frac{\sqrt\pi\,\Gamma(\frac{d+1}{2})}{\Gamma(\frac d2)} \approx \sqrt{\pi d/2}.
# $$
# ```
#
# So $c_d/P$ times the sum of $P$ one-dimensional MMDs along random directions is an unbiased
# estimate of the $d$-dimensional one (`cmmd.sliced_mmd2`). The constant grows like
# $\sqrt{\pi d/2}$:

# %% tags=["nbval-check-output"]
for d in (1, 2, 784, 3072):
    asymptote = math.sqrt(math.pi * d / 2)
    print(f"c_{d:<5d} = {sliced_factor(d):9.4f}   sqrt(pi d / 2) = {asymptote:9.4f}")

# %% [markdown]
# **Check.** For each dimension $d$ we draw $x \sim \mathcal N(0, I_d)$ and
# $y \sim \mathcal N(e_1, 1.5^2 I_d)$, compute the exact MMD² of the two empirical measures, and
# repeat the sliced estimate with independent directions. The 95% confidence interval of the
# mean ratio sliced/exact should contain 1 for every $d$ (about one dimension in twenty may
# miss it by chance). For $d = 1$ slicing is exact: every direction is $\pm 1$.

# %% mystnb={"figure": {"caption": "Left: the sliced estimate of the MMD² (times $c_d$, $P$ random directions) divided by the exact MMD², mean and 95% confidence interval over the repeats, for each dimension $d$; the dashed line is the theorem's value 1. The intervals widen with $d$ but stay centred near 1. Right: the slicing constant $c_d$ and its asymptote $\\sqrt{\\pi d/2}$, which it meets from about $d = 10$ on.", "name": "fig-ch1-slicing"}, "image": {"alt": "Two log-x plots: ratios near 1 with error bars against d; c_d and sqrt(pi d/2) as nearly identical rising lines."}}
g = rng(2)
n, n_proj, reps = cfg["n_points"], cfg["slice_projections"], cfg["slice_repeats"]
ratio_mean, ratio_half_width = [], []
for d in cfg["dims"]:
    x, y = two_clouds(n, d, g)
    exact = float(mmd2(x, y))
    ratios = np.array([float(sliced_mmd2(x, y, n_proj, generator=g)) / exact
                       for _ in range(reps)])
    ratio_mean.append(ratios.mean())
    ratio_half_width.append(1.96 * ratios.std(ddof=1) / math.sqrt(reps))
ratio_mean, ratio_half_width = np.array(ratio_mean), np.array(ratio_half_width)
covered = np.abs(ratio_mean - 1) <= ratio_half_width
slicing_deviation = float(np.abs(ratio_mean - 1).max())

dims_grid = np.unique(np.geomspace(1, max(cfg["dims"]), 60).round().astype(int))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.6, 3.8))
ax1.errorbar(cfg["dims"], ratio_mean, yerr=ratio_half_width, fmt="o", capsize=3,
             label="mean ± 95% CI")
ax1.axhline(1.0, color="k", lw=1, ls="--", label="theorem: 1")
ax1.set(xscale="log", xlabel="dimension d", ylabel="c_d · sliced MMD² / exact MMD²",
        title=f"Slicing theorem\n(N = M = {n}, P = {n_proj}, {reps} repeats)")
ax1.legend()
ax2.plot(dims_grid, [sliced_factor(int(d)) for d in dims_grid], label="c_d")
ax2.plot(dims_grid, np.sqrt(np.pi * dims_grid / 2), "--", label="sqrt(π d / 2)")
ax2.set(xscale="log", yscale="log", xlabel="dimension d", ylabel="slicing constant c_d",
        title="The slicing constant")
ax2.legend()
fig.tight_layout()
plt.show()
print(f"largest |mean ratio - 1| over d: {slicing_deviation:.4f}")
print(f"the 95% CI contains 1 for {covered.sum()} of {len(covered)} dimensions")

# %% [markdown]
# ## The gradient in one dimension, by sorting
#
# On the line,
# $F_1(x) = \frac{1}{NM}\sum_{i,k}|x_i - p_k| - \frac{1}{2N^2}\sum_{i,j}|x_i - x_j| + \text{const}$
# has, for distinct points, the derivative
#
# $$
# \partial_{x_i} F_1 = \frac{2\,\#\{k : p_k \le x_i\} - M}{NM} - \frac{2 r_i - N + 1}{N^2},
# $$
#
# where $r_i \in \{0, \dots, N-1\}$ is the rank of $x_i$ among the particles. Both counts come
# from one sort of the concatenated points, so the gradient costs $O((N+M)\log(N+M))$ instead
# of $O(NM + N^2)$ (`cmmd.mmd2_grad_1d`, batched over many lines). **Check** against
# automatic differentiation of the brute-force formula (`cmmd.energy.brute_force_mmd2`, all
# pairwise distances at once), with $N \ne M$:

# %%
g = rng(3)
xp = torch.randn(8, 150, generator=g, **F64).requires_grad_()
yp = torch.randn(8, 90, generator=g, **F64) * 2 + 0.3
values = torch.stack([brute_force_mmd2(xp[r, :, None], yp[r, :, None]) for r in range(8)])
(autograd_1d,) = torch.autograd.grad(values.sum(), xp)
sorting_error = float((mmd2_grad_1d(xp.detach(), yp) - autograd_1d).abs().max())
value_error = float((mmd2_1d(xp.detach(), yp) - values.detach()).abs().max())

x = torch.randn(120, 7, generator=g, **F64).requires_grad_()
y = torch.randn(80, 7, generator=g, **F64) + 0.5
(autograd_d,) = torch.autograd.grad(brute_force_mmd2(x, y), x)
exact_grad_error = float((mmd2_grad(x.detach(), y) - autograd_d).abs().max())
print(f"1D values, sorting vs brute force: max error {value_error:.1e}")
print(f"1D gradient, sorting vs autograd:  max error {sorting_error:.1e}")
print(f"7D exact gradient vs autograd:     max error {exact_grad_error:.1e}")

# %% tags=["nbval-check-output"]
print("sorting formula agrees with autograd (error < 1e-12):",
      max(sorting_error, value_error) < 1e-12)
print("exact gradient in 7D agrees with autograd (error < 1e-12):", exact_grad_error < 1e-12)

# %% [markdown]
# ## How many projections? The error of the sliced gradient
#
# Combining the two previous sections gives the sliced gradient
#
# $$
# \nabla_{x_i} F \approx \frac{c_d}{P}\sum_{p=1}^P
#   \partial_i F_1\big(\langle\xi_p, x\rangle; \langle\xi_p, p\rangle\big)\,\xi_p,
# \qquad \xi_p \sim \mathcal U(\mathbb S^{d-1}),
# $$
#
# unbiased, at cost $O(P(N+M)(d + \log(N+M)))$ (`cmmd.sliced_mmd2_grad`). Its relative error
# decays like $\sqrt{d/P}$ {cite:p}`hertrich2024generative`. **Check:** the relative error
# $\|\hat g - g\|/\|g\|$ against the exact gradient $g$ (`cmmd.mmd2_grad`), for several $d$,
# on log-log axes; the dashed lines are $\sqrt{d/P}$.

# %% mystnb={"figure": {"caption": "Relative error of the sliced gradient (root mean square over repeats). Top: against the number of projections $P$, one colour per dimension $d$, with $\\sqrt{d/P}$ dashed in the same colour; every fitted slope is close to the theory's $-1/2$. Bottom: the same points against $d/P$ collapse onto one line near $\\sqrt{d/P}$ (dashed); the smallest dimension, $d = 2$, lies somewhat below it.", "name": "fig-ch1-gradient-error"}, "image": {"alt": "Two log-log plots of gradient error: parallel falling lines per dimension, and all points on one rising line against d/P."}}
g = rng(4)
n, ps = cfg["err_points"], np.array(cfg["err_projections"], dtype=float)
errors = {}
for d in cfg["err_dims"]:
    x, y = two_clouds(n, d, g)
    exact = mmd2_grad(x, y)

    def rms_error(p: int) -> float:
        sq = [float((sliced_mmd2_grad(x, y, p, generator=g) - exact).norm() / exact.norm()) ** 2
              for _ in range(cfg["err_repeats"])]
        return math.sqrt(np.mean(sq))

    errors[d] = np.array([rms_error(int(p)) for p in ps])
slopes = {d: float(np.polyfit(np.log(ps), np.log(err), 1)[0]) for d, err in errors.items()}
constants = np.concatenate([err / np.sqrt(d / ps) for d, err in errors.items()])
mean_slope, error_constant = float(np.mean(list(slopes.values()))), float(np.median(constants))

fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8.4, 7.4), layout="constrained")
for i, (d, err) in enumerate(errors.items()):
    ax1.plot(ps, err, "o-", color=f"C{i}", label=f"d = {d}: slope {slopes[d]:.2f}")
    ax1.plot(ps, np.sqrt(d / ps), "--", color=f"C{i}", lw=1)
    ax2.plot(d / ps, err, "o", color=f"C{i}", label=f"d = {d}")
grid = np.geomspace(min(errors) / ps.max(), max(errors) / ps.min(), 50)
ax2.plot(grid, np.sqrt(grid), "k--", lw=1, label="sqrt(d/P)")
ax2.plot(grid, error_constant * np.sqrt(grid), "k:", lw=1,
         label=f"{error_constant:.2f}·sqrt(d/P)")
ax1.set(xscale="log", yscale="log", xlabel="projections P", ylabel="relative gradient error",
        title=f"Sliced gradient error (N = M = {n})")
ax2.set(xscale="log", yscale="log", xlabel="d / P", ylabel="relative gradient error",
        title="All dimensions against d/P")
ax1.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
ax2.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
plt.show()
print(f"slope of log error against log P, mean over d: {mean_slope:.3f} (theory: -0.5)")
print(f"error ≈ {error_constant:.2f}·sqrt(d/P) (median over all d and P)")

# %% [markdown]
# At $d = 784$ and $P = 500$ one estimate is more than 100% off; the flows still work because
# many small steps average the independent errors out. The constant in front of
# $\sqrt{d/P}$ depends on the point clouds.
#
# ## Cost in the number of particles
#
# **Check.** Wall time of one gradient, exact against sliced, as $N = M$ grows (float32; $d$
# and $P$ in the title). We fit the exponent $a$ of $t \propto N^a$ on the largest sizes: the
# exact gradient should approach $a = 2$, the sliced one $a \approx 1$ (the $\log N$ of sorting
# adds a little).

# %% mystnb={"figure": {"caption": "Seconds per gradient against the number of particles $N = M$ (log-log): the exact gradient (squares, computed only up to the size in the settings) and the sliced one (circles), with least-squares lines over the largest sizes. The exact cost grows with slope about 2, the sliced one with slope about 1; for the smallest $N$ the exact gradient is faster, because of the fixed overhead of the sliced one.", "name": "fig-ch1-cost"}, "image": {"alt": "Log-log timing plot: exact gradient times rise steeply, sliced gradient times rise linearly and cross below them."}}
g = rng(5)
d, n_proj = cfg["time_dim"], cfg["time_projections"]
sizes = np.array(cfg["time_n"])
t_sliced, t_exact = [], []
for n in sizes:
    x = torch.randn(int(n), d, generator=g, device=dev)
    y = torch.randn(int(n), d, generator=g, device=dev) + 0.5
    t_sliced.append(timed(lambda: sliced_mmd2_grad(x, y, n_proj, generator=g),
                          device=dev, repeat=cfg["time_repeat"]))
    if n <= cfg["time_exact_max"]:
        t_exact.append(timed(lambda: mmd2_grad(x, y), device=dev, repeat=cfg["time_repeat"]))
t_sliced, t_exact = np.array(t_sliced), np.array(t_exact)
n_exact = sizes[: len(t_exact)]


def fit_exponent(ns: np.ndarray, ts: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares slope and intercept of log t against log N, over N >= time_fit_min."""
    keep = ns >= cfg["time_fit_min"]
    slope, intercept = np.polyfit(np.log(ns[keep]), np.log(ts[keep]), 1)
    return float(slope), float(intercept), keep


a_sliced, b_sliced, keep_s = fit_exponent(sizes, t_sliced)
a_exact, b_exact, keep_e = fit_exponent(n_exact, t_exact)
fig, ax = plt.subplots(figsize=(6.2, 4))
ax.plot(sizes, t_sliced, "o", color="C0", label=f"sliced, P = {n_proj}")
ax.plot(n_exact, t_exact, "s", color="C3", label="exact")
ax.plot(sizes[keep_s], np.exp(b_sliced) * sizes[keep_s] ** a_sliced, "-", color="C0",
        label=f"fit: slope {a_sliced:.2f}")
ax.plot(n_exact[keep_e], np.exp(b_exact) * n_exact[keep_e] ** a_exact, "-", color="C3",
        label=f"fit: slope {a_exact:.2f}")
ax.set(xscale="log", yscale="log", xlabel="particles N = M", ylabel="seconds per gradient",
       title=f"Cost of one gradient (d = {d}, {dev.type})")
ax.legend()
fig.tight_layout()
plt.show()
speedup = float(t_exact[-1] / t_sliced[len(t_exact) - 1])
print(f"exponents: sliced {a_sliced:.2f}, exact {a_exact:.2f}")
print(f"at N = {n_exact[-1]:,} the sliced gradient is {speedup:.0f}x faster; "
      f"at N = {sizes[-1]:,} it takes {t_sliced[-1]:.2f} s")

# %% [markdown]
# ## An MMD particle flow in two dimensions
#
# The particles follow the negative gradient of $F$, scaled by $N$ so that each particle moves
# with the velocity field of the measure, $\dot x_i = -N \nabla_{x_i} F(x)$. Discretised by
# explicit Euler steps with step size $\tau$ (and optional momentum $m$),
# $v \leftarrow \nabla F(x) + m v$, $x \leftarrow x - \tau N v$ (`cmmd.mmd_flow`). For
# measures, this particle system is a Wasserstein gradient flow
# {cite:p}`ambrosio2008gradient`; the paper proves it in the conditional setting of the next
# section.
#
# **Check.** From uniform noise on $[0, 1]^2$ to a ring of eight Gaussians, with the exact
# gradient ($\tau = 1$, no momentum, float64) and with the sliced gradient. The grey line marks
# the MMD² between two independent samples of the target of the same size: the particles fit
# *the sample*, so they go below it.

# %% mystnb={"figure": {"caption": "The MMD particle flow with the exact gradient at four Euler steps: particles (blue) start as uniform noise on $[0, 1]^2$ and move toward a sample of a ring of eight Gaussians (grey). After a few steps they spread over a disc; at the last step they sit on the eight components, with a few stragglers between them.", "name": "fig-ch1-flow-snapshots"}, "image": {"alt": "Four scatter plots: a blue square of particles spreads out and settles on eight grey clusters around a circle."}}
def ring_of_gaussians(n: int, g: torch.Generator) -> torch.Tensor:
    """n points of an equal mixture of 8 Gaussians (std 0.2) centred on the circle of radius 2."""
    angle = 2 * math.pi * torch.randint(0, 8, (n,), generator=g, device=dev) / 8
    centres = 2 * torch.stack([torch.cos(angle), torch.sin(angle)], 1).double()
    return centres + 0.2 * torch.randn(n, 2, generator=g, **F64)


g = rng(6)
n, steps = cfg["flow_n"], cfg["flow_steps"]
target = ring_of_gaussians(n, g)
floor_2d = float(mmd2(target, ring_of_gaussians(n, g)))
x0 = torch.rand(n, 2, generator=g, **F64)
shown = sorted({0, 3, 10, steps})
flow = mmd_flow(x0, target, steps, snapshot_steps=shown)
flow_sliced = mmd_flow(x0, target, steps, n_projections=cfg["flow_projections"],
                       record_every=5, generator=g)

fig, axes = plt.subplots(1, len(shown), figsize=(8.4, 2.9), sharey=True, layout="constrained")
for ax, step in zip(axes, shown):
    ax.scatter(*target.cpu().T, s=3, c="0.75", label="target")
    ax.scatter(*flow.snapshots[step].cpu().T, s=3, c="C0", label="particles")
    ax.set(title=f"step {step}", xlim=(-3, 3), ylim=(-3, 3), xlabel="$x_1$", aspect="equal")
axes[0].set_ylabel("$x_2$")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=2,
           markerscale=3)
plt.show()

# %% mystnb={"figure": {"caption": "MMD² between the particles and the target sample along the flow (log-log), with the exact gradient (solid) and the sliced one (dashed); the grey line is the MMD² between two independent samples of the target of the same size. Both decrease steadily and the sliced flow follows the exact one closely; they go below the grey line because the particles fit this one sample.", "name": "fig-ch1-flow-mmd"}, "image": {"alt": "Log-log plot of two nearly identical falling curves crossing below a horizontal grey line."}}
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(np.array(flow.steps) + 1, flow.mmd2, label="exact gradient")
ax.plot(np.array(flow_sliced.steps) + 1, flow_sliced.mmd2, "--",
        label=f"sliced, P = {cfg['flow_projections']}")
ax.axhline(floor_2d, color="0.5", lw=1, label="two-sample level")
ax.set(xscale="log", yscale="log", xlabel="step + 1", ylabel="MMD² to the target",
       title="MMD² along the flow")
ax.legend()
fig.tight_layout()
plt.show()
decreasing = np.diff(flow.mmd2) < 0
print(f"MMD² at step 0: {flow.mmd2[0]:.3e}; after {steps} steps: {flow.mmd2[-1]:.3e} (exact), "
      f"{flow_sliced.mmd2[-1]:.3e} (sliced)\ntwo independent target samples: {floor_2d:.3e}")

# %% [markdown]
# The functional decreases at every step of the discrete flow:

# %% tags=["nbval-check-output"]
print("MMD² decreases at every Euler step:", bool(decreasing.all()))

# %% [markdown]
# ## The conditional particle flow
#
# For posterior sampling the paper flows *joint* particles $(x_i, q_i)$: the $x_i$ start as
# noise, the $q_i$ are the observations of the training pairs $(p_i, q_i) \sim P_{X,Y}$, and
# the MMD is taken in the joint space $\mathbb R^{d+n}$ against the training pairs. Only $x$
# moves: $\dot x_i = -N\nabla_{x_i} F\big((x_1, q_1), \dots, (x_N, q_N)\big)$, and the
# $q$-velocity is dropped (`cmmd.conditional_mmd_flow`).
#
# ```{prf:theorem} Conditional MMD flows are Wasserstein gradient flows (paper, Section 3.2; paraphrased)
# :label: thm-conditional-flow
# :nonumber:
#
# Let $(p_i, q_i)_{i=1}^N$ be pairwise distinct samples of $P_{X,Y}$ and let
# $x = (x_1, \dots, x_N)$ solve
# $\dot x_i = -N \nabla_{x_i} F\big((x_1, q_1), \dots, (x_N, q_N)\big)$ with $F$ the MMD² to
# $\frac1N\sum_i \delta_{(p_i, q_i)}$. Then the curve
# $t \mapsto \frac1N \sum_{i=1}^N \delta_{(x_i(t), q_i)}$ is a Wasserstein gradient flow of the
# MMD² to the target, restricted to the empirical measures whose second marginal is
# $\frac1N\sum_i \delta_{q_i}$. See {cite:t}`hagemann2024posterior`, Section 3, for the exact
# functional and assumptions.
# ```
#
# A gradient flow decreases its functional, and by the paper's error bound a small joint MMD
# implies that the conditional distributions of $x$ given $q$ are close to the posteriors on
# average. **Check** on a two-dimensional joint: $q \sim \mathcal U[-1, 1]$ and, given $q$, $x$
# lies on one of two parabolas $x = \pm(0.3 + q^2)$ with noise $\sigma = 0.08$, each with
# probability ½; the particles start from $x \sim \mathcal U[0, 1]$.

# %% mystnb={"figure": {"caption": "The conditional flow on the two-parabola toy: training pairs $(p_i, q_i)$ in grey, particles $(x_i, q_i)$ in blue, the parabolas $x = \\pm(0.3 + q^2)$ in black. At step 0 the $x_i$ are uniform on $[0, 1]$; after the flow they lie on both parabolas in about equal numbers, but a few percent are still stranded between the two branches.", "name": "fig-ch1-conditional-particles"}, "image": {"alt": "Two scatter plots against q: a uniform band of particles at step 0, and particles on two mirrored parabolas at the last step."}}
SIGMA = 0.08


def parabola_pairs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (p, q): q ~ U[-1, 1], p = ±(0.3 + q²) + N(0, SIGMA²), shapes (n, 1) each."""
    q = 2 * torch.rand(n, 1, generator=g, **F64) - 1
    branch = 2 * torch.randint(0, 2, (n, 1), generator=g, device=dev).double() - 1
    return branch * (0.3 + q**2) + SIGMA * torch.randn(n, 1, generator=g, **F64), q


def branch_distance(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Distance of each x to the nearer of the two parabolas ±(0.3 + q²)."""
    centre = 0.3 + q**2
    return torch.minimum((x - centre).abs(), (x + centre).abs()).squeeze(1)


g = rng(7)
n, steps = cfg["cond_n"], cfg["cond_steps"]
p, q = parabola_pairs(n, g)
p2, q2 = parabola_pairs(n, g)
floor_joint = float(mmd2(torch.cat([p, q], 1), torch.cat([p2, q2], 1)))
q_before = q.clone()
x0 = torch.rand(n, 1, generator=g, **F64)
cond = conditional_mmd_flow(x0, q, p, q, steps, record_every=max(1, steps // 100))

rms_particles = float(branch_distance(cond.x, q).square().mean().sqrt())
rms_target = float(branch_distance(p, q).square().mean().sqrt())
upper_fraction = float((cond.x > 0).double().mean())
stray_fraction = float((branch_distance(cond.x, q) > 3 * SIGMA).double().mean())
y_displacement = float((cond.y - q_before).abs().max())

fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.9), sharey=True, layout="constrained")
curve = torch.linspace(-1, 1, 200).double()
for ax, xs, title in ((axes[0], x0, "step 0"), (axes[1], cond.x, f"step {steps}")):
    ax.scatter(q.cpu(), p.cpu(), s=3, c="0.75", label="training pairs $(p_i, q_i)$")
    ax.scatter(q.cpu(), xs.cpu(), s=3, c="C0", label="particles $(x_i, q_i)$")
    for sign in (1, -1):
        ax.plot(curve, sign * (0.3 + curve**2), "k", lw=0.6)
    ax.set(title=title, xlabel="observation q", ylim=(-1.6, 1.6), xticks=[-1, -0.5, 0, 0.5, 1])
axes[0].set_ylabel("x")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=2,
           markerscale=3)
plt.show()
print(f"RMS distance to the nearer parabola: particles {rms_particles:.3f}, "
      f"training pairs {rms_target:.3f}, sigma {SIGMA}")
print(f"particles on the upper parabola: {upper_fraction:.1%} (exact: 50%)")
print(f"particles farther than 3 sigma from both: {stray_fraction:.1%} (exact: 0.3%)")

# %% mystnb={"figure": {"caption": "Joint MMD² between the particles and the training pairs along the conditional flow (log-log); the grey line is the MMD² between two independent samples of the joint of the same size. It falls by orders of magnitude and flattens towards the end.", "name": "fig-ch1-conditional-mmd"}, "image": {"alt": "Log-log plot of a falling curve that crosses below a horizontal grey line and levels off."}}
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(np.array(cond.steps) + 1, cond.mmd2, label="joint MMD²")
ax.axhline(floor_joint, color="0.5", lw=1, label="two-sample level")
ax.set(xscale="log", yscale="log", xlabel="step + 1", ylabel="joint MMD²",
       title="Joint MMD² along the conditional flow")
ax.legend()
fig.tight_layout()
plt.show()
print(f"joint MMD²: {cond.mmd2[0]:.3e} -> {cond.mmd2[-1]:.3e} "
      f"(two independent samples: {floor_joint:.3e})")

# %% tags=["nbval-check-output"]
print("the observations never move (max |Δq| = 0):", y_displacement == 0.0)
print("the joint MMD² decreased along the flow:", cond.mmd2[-1] < cond.mmd2[0])

# %% [markdown]
# The $q$ coordinates stay bit-identical while the $x$ coordinates leave $[0, 1]$ for both
# parabolas, in the right proportions: the joint particles reach the target joint, and with it
# (as far as $N$ particles can show) the conditional distributions. Not all of them: a few
# percent of the particles are still between the two parabolas, where the pulls of both
# branches nearly cancel, and they move on only slowly; they cost little MMD, which is why the
# joint MMD² is already below the two-sample level. Learning this flow with networks, so that
# a *new* observation needs no particles, is the subject of the next chapters.
#
# ## Summary
#
# The headline numbers of this chapter, as they enter the reproduction ledger of the
# introduction:

# %%
def row(experiment: str, metric: str, ours: float, paper: float | None = None) -> dict:
    """A ledger row of this chapter: no baseline, and lower is better for every metric."""
    return chapter.ledger_row(experiment, metric, ours, paper=paper, higher_is_better=False)


ledger = [
    row("sliced-mmd-theory", "slicing-relative-error", slicing_deviation),
    row("sliced-mmd-theory", "sorting-gradient-max-error", sorting_error),
    row("sliced-mmd-theory", "gradient-error-slope-in-p", mean_slope, paper=-0.5),
    row("gradient-cost", "sliced-time-exponent-in-n", a_sliced),
    row("gradient-cost", "exact-time-exponent-in-n", a_exact),
    row("mmd-flow-2d", "final-mmd2", flow.mmd2[-1]),
    row("conditional-flow-2d", "final-joint-mmd2", cond.mmd2[-1]),
    row("conditional-flow-2d", "stray-particle-fraction", stray_fraction),
    row("conditional-flow-2d", "y-max-displacement", y_displacement),
]
metrics = {
    "slicing": dict(dims=cfg["dims"], ratio_mean=ratio_mean, ratio_ci95=ratio_half_width,
                    ci_contains_one=int(covered.sum()), n_points=cfg["n_points"],
                    projections=cfg["slice_projections"], repeats=cfg["slice_repeats"]),
    "gradient_error": dict(projections=cfg["err_projections"],
                           relative_error={str(d): e for d, e in errors.items()},
                           slope_in_p={str(d): s for d, s in slopes.items()},
                           slope_in_p_mean=mean_slope, constant_sqrt_d_over_p=error_constant),
    "cost": dict(dim=cfg["time_dim"], projections=cfg["time_projections"], n=sizes,
                 sliced_s=t_sliced, exact_s=t_exact, sliced_exponent=a_sliced,
                 exact_exponent=a_exact, fit_min_n=cfg["time_fit_min"],
                 speedup_at_largest_exact_n=speedup),
    "flow_2d": dict(n=cfg["flow_n"], steps=cfg["flow_steps"], mmd2_initial=flow.mmd2[0],
                    mmd2_final=flow.mmd2[-1], mmd2_final_sliced=flow_sliced.mmd2[-1],
                    two_sample_level=floor_2d, monotone=bool(decreasing.all())),
    "conditional_2d": dict(n=cfg["cond_n"], steps=cfg["cond_steps"],
                           mmd2_initial=cond.mmd2[0], mmd2_final=cond.mmd2[-1],
                           two_sample_level=floor_joint, rms_branch_particles=rms_particles,
                           rms_branch_target=rms_target, upper_branch_fraction=upper_fraction,
                           stray_fraction_3sigma=stray_fraction,
                           y_max_displacement=y_displacement),
}
chapter.finish(results_path, ledger=ledger, metrics=metrics)
