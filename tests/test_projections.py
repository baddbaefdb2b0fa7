"""cmmd.projections: patch projections against an independent naive construction, unbiasedness against the
exact gradient, periodic windows, determinism, the fast 1D gradient, the pyramid helpers and a small flow."""

import math

import pytest
import torch

from cmmd.energy import mmd2_grad
from cmmd.flow import conditional_mmd_flow, gradient_estimator
from cmmd.projections import (
    add_window,
    downsample_images,
    full_gradient,
    patch_gradient,
    take_window,
    upsample_particles,
    window_slices,
)
from cmmd.sliced import mmd2_grad_1d, sliced_factor


def joint_cloud(n, x_shape, n_y, gen, *, shift=0.0, dtype=torch.float64):
    return torch.rand(n, math.prod(x_shape) + n_y, generator=gen, dtype=dtype) * 0.8 + shift


# ---------------------------------------------------------------------- an independent reference
def naive_patch_gradient(x, t, *, x_shape, y_shape, patch_size, windows, weights, n_projections, y_mode,
                         slicing, generator):
    """Builds every full direction explicitly (upsampled pattern, y part, joint normalisation), cuts each window
    by modular index arithmetic and back-projects into it; draws the same random numbers in the same order."""
    c, h, w = x_shape
    d, n = c * h * w, math.prod(y_shape)
    p = patch_size
    grad = torch.zeros_like(x)
    grad_img = grad[:, :d].view(-1, c, h, w)
    for window, weight in zip(windows, weights):
        f = window // p
        top = int(torch.randint(0, h, (1,), generator=generator))
        left = int(torch.randint(0, w, (1,), generator=generator))
        k_y = y_shape[0] * p * p if y_mode == "window" else n
        raw = torch.randn(n_projections, c * p * p + k_y, generator=generator, dtype=x.dtype)
        a = raw[:, : c * p * p].view(-1, c, p, p).repeat_interleave(f, 2).repeat_interleave(f, 3)
        b = raw[:, c * p * p :]
        if y_mode == "window":
            b = b.view(-1, y_shape[0], p, p).repeat_interleave(f, 2).repeat_interleave(f, 3)
        xi = torch.cat([a.flatten(1), b.flatten(1)], 1)
        xi = xi / xi.norm(dim=1, keepdim=True)
        rows, cols = (top + torch.arange(window)) % h, (left + torch.arange(window)) % w

        def features(z):
            img = z[:, :d].reshape(-1, c, h, w)[:, :, rows][:, :, :, cols]
            y = z[:, d:]
            if y_mode == "window":
                y = y.reshape(-1, y_shape[0], h, w)[:, :, rows][:, :, :, cols]
            return torch.cat([img.flatten(1), y.flatten(1)], 1)

        g1 = mmd2_grad_1d(xi @ features(x).T, xi @ features(t).T)  # (P, N)
        constant = sliced_factor(c * p * p + k_y if slicing == "local" else d + n)
        g_win = (g1.T @ xi[:, : c * window * window]) * (constant * weight / n_projections)
        grad_img[:, :, rows[:, None], cols[None, :]] += g_win.view(-1, c, window, window)
    return grad


CASES = [  # x_shape, y_shape, patch, windows, weights, y_mode, slicing
    ((1, 6, 8), (3,), 3, (3, 6), (0.5, 2.0), "vector", "local"),
    ((2, 6, 6), (4,), 2, (2, 4, 6), (1.0, 0.3, 1.0), "vector", "joint"),
    ((1, 6, 6), (1, 6, 6), 3, (3, 6), (1.0, 0.7), "window", "local"),
    ((2, 4, 6), (1, 4, 6), 2, (4,), (1.5,), "window", "joint"),
]


@pytest.mark.parametrize("x_shape, y_shape, p, windows, weights, y_mode, slicing", CASES)
def test_patch_gradient_equals_naive_construction(x_shape, y_shape, p, windows, weights, y_mode, slicing):
    gen = torch.Generator().manual_seed(5)
    n_y = math.prod(y_shape)
    x, t = joint_cloud(25, x_shape, n_y, gen), joint_cloud(31, x_shape, n_y, gen, shift=0.2)
    options = dict(x_shape=x_shape, y_shape=y_shape, patch_size=p, windows=windows, weights=weights,
                   n_projections=17, y_mode=y_mode, slicing=slicing)
    for seed in range(4):  # several window positions, wrapping or not
        fast = patch_gradient(**{k: v for k, v in options.items()})(x, t, torch.Generator().manual_seed(seed))
        naive = naive_patch_gradient(x, t, **options, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(fast, naive, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------- unbiasedness
def ratio_to_standard_error(estimates: torch.Tensor, exact: torch.Tensor) -> float:
    """||mean − exact||² / (tr Σ / K): ≈ 1 for an unbiased estimator (the same χ²-like test as test_sliced)."""
    k = estimates.shape[0]
    mean = estimates.mean(0)
    spread = ((estimates - mean) ** 2).sum(tuple(range(1, estimates.ndim))).mean() * k / (k - 1)
    return float(((mean - exact) ** 2).sum() / (spread / k))


def test_whole_image_window_is_unbiased_for_the_exact_joint_gradient(gen):
    """One scale, window = the whole image, f = 1: directions uniform on the joint sphere, c_k = c_{d+n}."""
    x_shape, n_y = (1, 4, 4), 3
    x, t = joint_cloud(30, x_shape, n_y, gen), joint_cloud(40, x_shape, n_y, gen, shift=0.3)
    proj = patch_gradient(x_shape, (n_y,), patch_size=4, windows=[4], weights=[1.0], n_projections=50)
    assert proj.constant() == sliced_factor(16 + n_y)
    exact = mmd2_grad(x, t)[:, :16]
    estimates = torch.stack([proj(x, t, gen)[:, :16] for _ in range(400)])
    assert ratio_to_standard_error(estimates, exact) < 3.0
    assert float((estimates.mean(0) - exact).norm() / exact.norm()) < 0.05


def position_averaged_reference(x, t, *, x_shape, y_shape, patch_size, window, y_mode):
    """E over the uniform window position of ∇_x MMD²(Π#μ, Π#ν), Π = block averages of (window, y) in an
    orthonormal basis (block sums / f): the expectation of one scale with slicing="local"."""
    c, h, w = x_shape
    d, f = c * h * w, window // patch_size

    def pooled(img):  # (B, C', H, W) → orthonormal coordinates of the block-constant window
        b = img.shape[0]
        return img[:, :, :window, :window].reshape(b, -1, patch_size, f, patch_size, f).sum((3, 5)) / f

    total = torch.zeros(x.shape[0], c, h, w, dtype=x.dtype)
    for top in range(h):
        for left in range(w):
            def coords(z):
                img = torch.roll(z[:, :d].reshape(-1, c, h, w), (-top, -left), (2, 3))
                y = z[:, d:]
                if y_mode == "window":
                    y = pooled(torch.roll(y.reshape(-1, *y_shape), (-top, -left), (2, 3)))
                return torch.cat([pooled(img).flatten(1), y.flatten(1)], 1)

            g = mmd2_grad(coords(x), coords(t))[:, : c * patch_size**2].reshape(-1, c, patch_size, patch_size) / f
            up = g.repeat_interleave(f, 2).repeat_interleave(f, 3)
            placed = torch.zeros_like(total)
            placed[:, :, :window, :window] = up
            total += torch.roll(placed, (top, left), (2, 3))
    return total.flatten(1) / (h * w)


@pytest.mark.parametrize("x_shape, y_shape, p, window, y_mode", [
    ((1, 4, 4), (3,), 2, 2, "vector"),  # a local window (f = 1) that wraps around the border
    ((1, 4, 4), (1, 4, 4), 2, 4, "window"),  # upsampled patterns (f = 2), y cut at the same window
])
def test_local_scale_is_unbiased_for_the_block_averaged_window_marginals(gen, x_shape, y_shape, p, window, y_mode):
    n_y = math.prod(y_shape)
    x, t = joint_cloud(20, x_shape, n_y, gen), joint_cloud(25, x_shape, n_y, gen, shift=0.3)
    proj = patch_gradient(x_shape, y_shape, patch_size=p, windows=[window], weights=[1.0], n_projections=40,
                          y_mode=y_mode)
    exact = position_averaged_reference(x, t, x_shape=x_shape, y_shape=y_shape, patch_size=p, window=window,
                                        y_mode=y_mode)
    estimates = torch.stack([proj(x, t, gen)[:, :16] for _ in range(600)])
    assert ratio_to_standard_error(estimates, exact) < 3.0
    assert float((estimates.mean(0) - exact).norm() / exact.norm()) < 0.1


# ---------------------------------------------------------------------- periodic windows
def test_window_at_the_border_wraps_to_the_right_pixels():
    images = torch.arange(2 * 5 * 6, dtype=torch.float64).view(1, 2, 5, 6)
    top, left, size = 3, 4, 4
    window = take_window(images, top, left, size)
    for i in range(size):
        for j in range(size):
            assert torch.equal(window[0, :, i, j], images[0, :, (top + i) % 5, (left + j) % 6])
    canvas = torch.zeros_like(images)
    add_window(canvas, torch.ones_like(window), top, left)
    expected_rows, expected_cols = {3, 4, 0, 1}, {4, 5, 0, 1}
    for r in range(5):
        for c in range(6):
            assert float(canvas[0, 0, r, c]) == float(r in expected_rows and c in expected_cols)
    assert len(window_slices(top, left, size, 5, 6)) == 4
    assert len(window_slices(0, 0, size, 5, 6)) == 1
    assert take_window(images, 0, 1, 3).data_ptr() == images[:, :, 0:3, 1:4].data_ptr()  # a view when it fits


def test_gradient_lives_on_one_periodic_window(gen):
    x_shape = (1, 7, 7)
    x, t = joint_cloud(40, x_shape, 2, gen, dtype=torch.float32), joint_cloud(40, x_shape, 2, gen, shift=0.3,
                                                                               dtype=torch.float32)
    proj = patch_gradient(x_shape, (2,), patch_size=2, windows=[4], weights=[1.0], n_projections=64)
    supports = set()
    for seed in range(30):
        grad = proj(x, t, torch.Generator().manual_seed(seed))
        assert torch.all(grad[:, 49:] == 0)  # the y columns never move
        support = (grad[:, :49] != 0).any(0).view(7, 7)
        rows = support.any(1).nonzero().flatten().tolist()
        cols = support.any(0).nonzero().flatten().tolist()
        assert int(support.sum()) == 16 and len(rows) == 4 and len(cols) == 4
        supports.add((tuple(rows), tuple(cols)))
        assert any(set(rows) == {(r + i) % 7 for i in range(4)} for r in range(7))
        assert any(set(cols) == {(c + i) % 7 for i in range(4)} for c in range(7))
    assert any(rows[0] == 0 and rows[-1] == 6 for rows, _ in supports)  # some windows wrapped


# ---------------------------------------------------------------------- determinism, options, errors
def test_same_generator_same_numbers_and_independent_of_block_size(gen):
    x_shape = (1, 8, 8)
    x, t = joint_cloud(50, x_shape, 10, gen), joint_cloud(60, x_shape, 10, gen, shift=0.2)
    options = dict(patch_size=2, windows=[2, 4, 8], weights=[0.1, 0.5, 1.0], n_projections=30)
    a = patch_gradient(x_shape, (10,), **options)(x, t, torch.Generator().manual_seed(3))
    b = patch_gradient(x_shape, (10,), **options, max_block=200)(x, t, torch.Generator().manual_seed(3))
    c = patch_gradient(x_shape, (10,), **options)(x, t, torch.Generator().manual_seed(4))
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.all(a[:, 64:] == 0)


def test_joint_constant_rescales_every_scale(gen):
    x_shape = (1, 6, 6)
    x, t = joint_cloud(20, x_shape, 5, gen), joint_cloud(20, x_shape, 5, gen, shift=0.2)
    local = patch_gradient(x_shape, (5,), patch_size=3, windows=[6], weights=[1.0], n_projections=8)
    joint = patch_gradient(x_shape, (5,), patch_size=3, windows=[6], weights=[1.0], n_projections=8, slicing="joint")
    assert local.constant() == sliced_factor(9 + 5) and joint.constant() == sliced_factor(36 + 5)
    ratio = joint.constant() / local.constant()
    g_local = local(x, t, torch.Generator().manual_seed(1))
    g_joint = joint(x, t, torch.Generator().manual_seed(1))
    assert torch.allclose(g_joint, g_local * ratio, rtol=1e-12)


def test_full_gradient_is_the_sliced_estimator(gen):
    x, t = joint_cloud(20, (1, 3, 3), 2, gen), joint_cloud(20, (1, 3, 3), 2, gen, shift=0.3)
    a = full_gradient(16)(x, t, torch.Generator().manual_seed(2))
    b = gradient_estimator(16)(x, t, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert torch.equal(full_gradient(None)(x, t, None), mmd2_grad(x, t))


@pytest.mark.parametrize("kwargs, match", [
    (dict(windows=[3]), "multiple of patch_size"),
    (dict(windows=[10]), "at most min"),
    (dict(windows=[2, 4], weights=[1.0]), "equal length"),
    (dict(windows=[]), "non-empty"),
    (dict(weights=[float("nan")]), "finite"),
    (dict(y_mode="pixels"), "y_mode"),
    (dict(slicing="global"), "slicing"),
    (dict(y_mode="window"), "y_mode='window'"),
    (dict(patch_size=0), "patch_size"),
    (dict(n_projections=2.5), "n_projections"),
    (dict(x_shape=(8, 8)), "x_shape"),
    (dict(y_shape=()), "y_shape"),
])
def test_bad_options_are_named(kwargs, match):
    options = dict(x_shape=(1, 8, 8), y_shape=(3,), patch_size=2, windows=[4], weights=[1.0], n_projections=4)
    options.update(kwargs)
    with pytest.raises(ValueError, match=match):
        patch_gradient(options.pop("x_shape"), options.pop("y_shape"), **options)


def test_bad_inputs_are_named():
    proj = patch_gradient((1, 4, 4), (2,), patch_size=2, windows=[4], weights=[1.0], n_projections=4)
    with pytest.raises(ValueError, match="d \\+ n = 16 \\+ 2 = 18"):
        proj(torch.zeros(3, 17), torch.zeros(3, 17), None)
    with pytest.raises(ValueError, match="targets contains NaN"):
        proj(torch.zeros(3, 18), torch.full((3, 18), float("nan")), None)
    with pytest.raises(ValueError, match="feature dimension"):
        proj(torch.zeros(3, 18), torch.zeros(3, 19), None)


# ---------------------------------------------------------------------- pyramid
def test_upsample_particles_is_nearest_neighbour_plus_noise(gen):
    x = torch.rand(4, 3, 4, 4, generator=gen)
    up = upsample_particles(x, noise=0.0)
    assert up.shape == (4, 3, 8, 8)
    assert torch.equal(up[:, :, ::2, ::2], x) and torch.equal(up[:, :, 1::2, 1::2], x)
    assert torch.allclose(downsample_images(up, 2), x, atol=1e-7)
    big = torch.zeros(200, 1, 16, 16)
    noisy = upsample_particles(big, noise=0.07, generator=torch.Generator().manual_seed(0))
    assert abs(float(noisy.std()) - 0.07) < 0.07 * 4 / math.sqrt(noisy.numel())  # ~4σ of the sample std
    again = upsample_particles(big, noise=0.07, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    assert upsample_particles(x, factor=4, noise=0).shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match="noise"):
        upsample_particles(x, noise=-1)
    with pytest.raises(ValueError, match="divisible"):
        downsample_images(torch.zeros(1, 1, 6, 6), 4)
    with pytest.raises(ValueError, match="N, C, H, W"):
        upsample_particles(torch.zeros(3, 4))


# ---------------------------------------------------------------------- a small conditional flow
def test_patch_flow_on_tiny_images_decreases_the_joint_mmd(gen):
    """Two classes of 8×8 images (horizontal or vertical bars at a random offset), condition 10·one-hot."""
    n = 150
    labels = torch.arange(n) % 2
    offsets = torch.randint(0, 4, (n,), generator=gen)
    stripes = ((torch.arange(8)[None, :] + offsets[:, None]) % 4 < 2).float()  # (n, 8)
    images = torch.where(labels[:, None, None] == 0, stripes[:, :, None].expand(n, 8, 8),
                         stripes[:, None, :].expand(n, 8, 8))
    images = images + 0.05 * torch.randn(n, 8, 8, generator=gen)
    cond = 10.0 * torch.nn.functional.one_hot(labels, 2).float()
    proj = patch_gradient((1, 8, 8), (2,), patch_size=2, windows=[2, 4, 8], weights=[1.0, 1.0, 1.0],
                          n_projections=64)
    x0 = torch.rand(n, 64, generator=gen)
    result = conditional_mmd_flow(x0, cond, images.flatten(1), cond, 300, gradient=proj, generator=gen,
                                  record_every=100)
    assert torch.equal(result.y, cond)
    values = result.mmd2  # exact MMD² at steps 0, 100, 200, 300 (seeded; 0.273 → 0.076 when written)
    assert values[-1] < values[0] / 2.5 and values[1] < values[0], values
