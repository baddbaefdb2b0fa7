"""cmmd.configs: the paper profile equals the authors' settings (METHOD.md §5, written out here independently),
every experiment builds in every profile, schedules, memory estimates, and bad names."""

import dataclasses
import math

import pytest
import torch

from cmmd.configs import EXPERIMENTS, estimate_gpu_memory_gb, get_config, settings_table
from cmmd.flow import GradientFn
from cmmd.model import ConditionalMMDFlow
from cmmd.nets import UNet, count_parameters
from cmmd.projections import PatchProjections

# METHOD.md §5 (and §3 for lr, T_1, the caps), copied by hand from its table. Entries marked [code] are not in
# the table and come from the authors' scripts (named in METHOD.md's sources).
MNIST_CC = dict(n_train=20_000, x_shape=(1, 28, 28), y_shape=(10,), patch_size=5, windows=(5, 10, 15, 20, 25),
                weights=(0.1, 0.1, 0.1, 1.0, 1.0), n_projections=500, step_size=1.0, momentum=0.0, n_networks=50,
                train_steps=5000, batch_size=100, first_steps=16, max_steps=30_000)
PAPER = {
    "mnist-classcond": MNIST_CC,
    "fashionmnist-classcond": dict(MNIST_CC, patch_size=9, windows=(9, 27), weights=(0.8, 1.0)),
    "mnist-inpainting": dict(MNIST_CC, y_shape=(280,), observed_rows=10, windows=(5, 10, 15, 20),
                             weights=(0.25, 0.5, 0.85, 0.85), n_networks=90),
    "fashionmnist-inpainting": dict(MNIST_CC, y_shape=(280,), observed_rows=10, patch_size=7, windows=(7, 14, 21),
                                    weights=(0.4, 0.6, 0.85),  # [code]
                                    n_networks=90),
    "materials-superres": dict(n_train=1000, x_shape=(1, 100, 100), y_shape=(1, 25, 25), kernel_size=16,
                               blur_sigma=2.0, factor=4, noise_std=0.01, n_projections=5000, step_size=1.0,
                               momentum=0.7, n_networks=30, train_steps=4000, batch_size=10, first_steps=8,
                               max_steps=10_000),
    "ct-lowdose": dict(n_train=500, x_shape=(1, 362, 362), y_shape=(1, 362, 362), patch_size=15, n_scales=12,
                       n_projections=400, step_size=1.0, n_networks=40, grad_clip=1.0, max_steps=10_000,
                       first_steps=16, y_mode="window", angle_fraction=1.0, low_dose=True,
                       train_steps=4000, batch_size=10),  # [code] 4,000 steps; METHOD §3: batch 10 for large images
}
PAPER["ct-limited-angle"] = dict(PAPER["ct-lowdose"], angle_fraction=0.8)  # 800 of 1,000 angles, low-dose noise [code]
PYRAMIDS = {  # METHOD.md §5 and §4
    "cifar10-classcond": dict(n_train=40_000, x_shape=(3, 32, 32), y_shape=(10,), sizes=(4, 8, 16, 32),
                              taus=(0.5, 1.0, 1.0, 1.0), top_patch=7, top_windows=(7, 14, 21, 28), top_p=400,
                              networks=156, batch_size=100, momentum_max=0.8, noise=0.07),
    "cifar10-inpainting": dict(n_train=30_000, x_shape=(3, 32, 32), y_shape=(3 * 16 * 32,), observed_rows=16,
                               sizes=(4, 8, 16, 32), taus=(0.5, 1.0, 1.0, 1.0), top_patch=7,
                               top_windows=(7, 14, 21, 28), top_p=400, networks=147, batch_size=100,
                               momentum_max=0.8, noise=0.07),
    "celeba-superres": dict(n_train=20_000, x_shape=(3, 64, 64), y_shape=(3, 16, 16), factor=4, noise_std=0.01,
                            sizes=(8, 16, 32, 64), taus=(0.5, 1.0, 1.0, 1.0), top_patch=7, top_p=500,
                            networks=147, batch_size=10, momentum_max=0.8, noise=0.07),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_single_level_paper_configs_equal_method(name):
    cfg, expected = get_config(name, "paper"), PAPER[name]
    assert cfg.profile == "paper" and cfg.experiment == name and len(cfg.levels) == 1
    level = cfg.level_index(-1)
    lv, flow = cfg.levels[level], cfg.flow_config()
    for key in ("n_train", "x_shape", "y_shape", "n_networks", "train_steps", "batch_size", "max_steps",
                "observed_rows", "kernel_size", "blur_sigma", "factor", "noise_std", "angle_fraction", "low_dose"):
        if key in expected:
            assert getattr(cfg, key) == expected[key], key
    assert lv.step_size == flow.step_size == expected["step_size"]
    assert flow.momentum == expected.get("momentum", 0.0)
    assert flow.first_steps == cfg.flow_steps()[0] == expected["first_steps"]
    assert flow.n_networks == expected["n_networks"]
    assert flow.lr == 5e-4 and cfg.max_increment == 1024  # METHOD.md §3
    assert flow.grad_clip == expected.get("grad_clip")
    if "patch_size" in expected:
        spec = lv.patches
        assert spec.patch_size == expected["patch_size"] and spec.n_projections == expected["n_projections"]
        assert spec.y_mode == expected.get("y_mode", "vector")
        assert spec.slicing == "joint"  # the authors' constant c_{d+n} [code]
        if "windows" in expected:
            assert spec.windows == expected["windows"] and spec.weights == expected["weights"]
        else:  # CT: 12 scales s = 0..10 and 20 of p = 15 [code]
            assert len(spec.windows) == expected["n_scales"]
            assert spec.windows == tuple(15 * (s + 1) for s in list(range(11)) + [20])
            assert spec.weights == (0.1,) * 6 + (0.2,) * 4 + (0.5, 1.0)
    else:
        assert lv.patches is None and lv.n_projections == expected["n_projections"]


@pytest.mark.parametrize("name", sorted(PYRAMIDS))
def test_pyramid_paper_configs_equal_method(name):
    cfg, expected = get_config(name, "paper"), PYRAMIDS[name]
    for key in ("n_train", "x_shape", "y_shape", "batch_size", "observed_rows", "factor", "noise_std"):
        if key in expected:
            assert getattr(cfg, key) == expected[key], key
    assert tuple(lv.size for lv in cfg.levels) == expected["sizes"]  # 1/8 → 1/4 → 1/2 → 1
    assert tuple(lv.step_size for lv in cfg.levels) == expected["taus"]
    assert cfg.total_networks == expected["networks"]  # METHOD.md §5: ≈156 / ≈147
    assert cfg.upsample_noise == expected["noise"] and cfg.momentum_max == expected["momentum_max"]
    for lv in cfg.levels:
        d = cfg.x_shape[0] * lv.size**2
        if lv.size < 32:  # full projections below 32 px with P = max(500, d)
            assert lv.patches is None and lv.n_projections == max(500, d)
        else:
            assert lv.patches.patch_size == expected["top_patch"] and lv.patches.n_projections == expected["top_p"]
    if "top_windows" in expected:
        assert cfg.levels[-1].patches.windows == expected["top_windows"]
    momenta = [m for i in range(len(cfg.levels)) for m in cfg.momenta(i)]
    full_networks = sum(n for lv, n in zip(cfg.levels, cfg.networks_per_level()) if lv.patches is None)
    # +0.01 per network up to .8 over the full-projection levels [code]; METHOD.md §5: "up to .8" (CIFAR-10)
    assert max(momenta) == pytest.approx(min(0.8, 0.01 * (full_networks - 1))) and momenta[0] == 0.0
    assert all(m == 0.0 for m in cfg.momenta(-1))  # none at the patch level [code]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_experiment_builds_in_every_profile(name, profile):
    cfg = get_config(name, profile)
    assert type(cfg).NAME == name and cfg.profile == profile
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_train = 1
    for level in range(len(cfg.levels)):
        flow = cfg.flow_config(level)
        assert flow.flow_steps() == cfg.flow_steps(level)  # the model runs the authors' schedule
        assert flow.momenta() == pytest.approx(cfg.momenta(level), abs=1e-12)  # and their momenta
        gradient: GradientFn = cfg.gradient(level)
        assert callable(gradient)
        if cfg.levels[level].patches is not None:
            assert isinstance(gradient, PatchProjections) and gradient.x_shape == cfg.level_shape(level)
    if profile != "paper":
        paper = get_config(name, "paper")  # reduced: no more training pixels (the materials cpu tiles are smaller)
        assert cfg.n_train * math.prod(cfg.x_shape) <= paper.n_train * math.prod(paper.x_shape)
        assert cfg.total_networks <= get_config(name, "paper").total_networks


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_smoke_config_trains_one_level_end_to_end(name):
    """The smoke profile's objects work together: data of the configured shapes, gradient, UNet, fit, sample."""
    cfg = get_config(name, "smoke")
    gen = torch.Generator().manual_seed(0)
    for level in sorted({0, len(cfg.levels) - 1}):
        shape = cfg.level_shape(level)
        x = torch.rand(cfg.n_train, *shape, generator=gen)
        y = torch.rand(cfg.n_train, *cfg.y_shape, generator=gen)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = cfg.network(level)
        assert isinstance(net, UNet)
        flow = dataclasses.replace(cfg.flow_config(level), n_networks=1)
        model = ConditionalMMDFlow(shape, cfg.y_shape, net=net, config=flow, gradient=cfg.gradient(level))
        model.fit(x, y, generator=gen, progress=False)
        assert model.sample(y[:2], 3, generator=gen).shape == (2, 3, *shape)


def test_forward_operators_match_the_shapes():
    for name in ("mnist-inpainting", "cifar10-inpainting", "materials-superres", "celeba-superres"):
        cfg = get_config(name, "paper")
        op = cfg.operator()
        assert tuple(op.x_shape) == cfg.x_shape and tuple(op.y_shape) == cfg.y_shape
    ct = get_config("ct-limited-angle", "paper").operator()
    assert ct.angles.numel() == 800
    assert torch.allclose(ct.angles, torch.arange(100, 900, dtype=torch.float64) * math.pi / 1000)  # [code]
    assert get_config("mnist-classcond", "paper").operator().scale == 10.0


def test_schedules_follow_the_authors_rule():
    """T_1 = 2^e and T_{l+1} = min(T_l + min(2^{e+l−1}, 1024), cap) [code]."""
    assert get_config("mnist-classcond", "paper").flow_steps()[:8] == [16, 32, 64, 128, 256, 512, 1024, 2048]
    mnist = get_config("mnist-classcond", "paper").flow_steps()
    assert mnist[-1] == 30_000 and all(b - a <= 1024 for a, b in zip(mnist, mnist[1:]))
    assert get_config("materials-superres", "paper").flow_steps()[:5] == [8, 16, 32, 64, 128]
    assert max(get_config("ct-lowdose", "paper").flow_steps()) == 10_000
    cifar = get_config("cifar10-classcond", "paper")
    assert cifar.networks_per_level() == (44, 38, 32, 42)
    assert cifar.flow_steps(1)[:3] == [1024, 2048, 3072] and cifar.flow_steps(2)[:2] == [8192, 9216]
    assert sum(cifar.flow_steps(0)) >= 700_000 > sum(cifar.flow_steps(0)[:-1])


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_paper_memory_fits_a_16_gb_gpu(name):
    paper = estimate_gpu_memory_gb(get_config(name, "paper"))
    cpu = estimate_gpu_memory_gb(get_config(name, "cpu"))
    print(f"{name}: paper {paper:.1f} GiB, cpu {cpu:.1f} GiB")
    assert 0.5 < paper < 16.0
    assert cpu <= paper


def test_memory_estimate_grows_with_the_problem():
    cfg = get_config("mnist-classcond", "paper")
    bigger = dataclasses.replace(cfg, n_train=2 * cfg.n_train)
    assert estimate_gpu_memory_gb(bigger) > estimate_gpu_memory_gb(cfg)
    levels = [estimate_gpu_memory_gb(get_config("cifar10-classcond", "paper"), level=i) for i in range(4)]
    assert levels == sorted(levels)
    # the particle and target tensors alone: N·(d + n) floats, several copies
    n, dim = cfg.n_train, math.prod(cfg.x_shape) + 10
    assert estimate_gpu_memory_gb(cfg) > 4 * n * dim * 4 / 2**30


def test_unknown_names_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="unknown experiment 'mnist'.*'mnist-classcond'.*'ct-limited-angle'"):
        get_config("mnist", "cpu")
    with pytest.raises(ValueError, match="unknown profile 'gpu'.*'smoke'.*'paper'"):
        get_config("mnist-classcond", "gpu")
    with pytest.raises(ValueError, match="level"):
        get_config("mnist-classcond", "cpu").flow_steps(3)


def test_summary_rows_come_from_the_config_and_leave_the_global_rng_alone():
    cfg = get_config("ct-limited-angle", "paper")
    before = torch.get_rng_state()
    rows = cfg.summary()
    assert torch.equal(torch.get_rng_state(), before)
    assert rows["angles measured"] == "800 of 1000 (nos. 100–899)" and rows["noise"] == "Poisson, 4,096 photons"
    assert rows["networks L"] == cfg.total_networks == 40
    assert rows["flow steps in total"] == sum(cfg.flow_steps())
    with torch.random.fork_rng(devices=[]):
        assert rows["UNet parameters"] == count_parameters(cfg.network())
    assert get_config("ct-lowdose", "paper").summary()["noise"] == "Poisson, 4,096 photons"
    assert get_config("mnist-inpainting", "paper").summary()["observed rows"] == "bottom 10 of 28"
    cpu = get_config("ct-limited-angle", "cpu").summary()
    assert cpu["projections"] == "patches p=4, windows 4×12, 8×4, 16, 32, 64, P=100 each"


def test_settings_table_puts_profiles_side_by_side():
    text = settings_table({"toy": {"cpu": {"N": 4000, "m": 0.5}, "paper": {"N": 20000, "extra": "a|b_c"}}})
    lines = text.splitlines()
    assert lines[0] == "**toy**"
    assert lines[2] == "| setting | profile `cpu` | profile `paper` |"
    assert lines[3] == "|---|---|---|"
    assert lines[4] == "| N | 4,000 | 20,000 |"
    assert lines[5] == "| m | 0.5 | — |"
    assert lines[6] == "| extra | — | a\\|b\\_c |"  # Markdown's table and emphasis characters escaped


def test_materials_tile_observations_periodic_or_cut_from_the_whole_slice():
    """'periodic' observes each tile on its own grid (the authors); 'cropped' cuts A(slice) at the tile's place.
    Reference: the blur-and-stride sum y_ij = Σ_kl g_k g_l x[4i + k − 6, 4j + l − 6] written out for one pixel."""
    from cmmd.operators.blur import gaussian_kernel_1d

    slices = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    paper = get_config("materials-superres", "paper")
    level = dataclasses.replace(paper.levels[0], size=32)
    paper = dataclasses.replace(paper, x_shape=(1, 32, 32), y_shape=(1, 8, 8), levels=(level,))
    tiles, periodic = paper.tile_pairs(slices)
    assert tiles.shape == (18, 1, 32, 32) and torch.equal(periodic, paper.operator()(tiles))
    _, cropped = dataclasses.replace(paper, tile_observations="cropped").tile_pairs(slices)
    assert cropped.shape == periodic.shape
    # Observed pixels whose 16×16 footprint lies inside the tile (rows 4i − 6 ≥ 0 and 4i + 9 ≤ 31) agree ...
    inner = (..., slice(2, 6), slice(2, 6))
    assert torch.allclose(cropped[inner], periodic[inner], rtol=0, atol=1e-12)
    # ... the edge ones differ: the periodic tile wraps around, the cropped one sees the neighbouring tile.
    assert (cropped[..., 0, :] - periodic[..., 0, :]).abs().max() > 1e-3
    g = gaussian_kernel_1d(16, 2.0).to(torch.float64)
    window = slices[1, 0, 32 + 4 * 0 - 6 : 32 + 4 * 0 + 10, 32 + 4 * 7 - 6 : 32 + 4 * 7 + 10]  # slice 1, tile (1, 1)
    expected = (g[:, None] * g[None, :] * window).sum()
    assert torch.allclose(cropped[9 + 3 + 1, 0, 0, 7], expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="tile_observations"):
        dataclasses.replace(paper, tile_observations="wrapped")
    with pytest.raises(ValueError, match="divisible by the factor"):
        dataclasses.replace(paper, x_shape=(1, 30, 30), y_shape=(1, 7, 7), levels=(dataclasses.replace(level, size=30),))
