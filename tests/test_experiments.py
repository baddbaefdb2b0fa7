"""cmmd.experiments: the paper profile equals the authors' settings ([method §5], written out here independently),
every experiment builds in every profile, reduced profiles are the paper's plus their changes, every override of
build_flow changes what runs, schedules, memory estimates, and bad names."""

import dataclasses
import math

import pytest
import torch

from cmmd.experiments import (EXPERIMENTS, Changes, estimate_gpu_memory_gb, get_config, settings_table,
                              summary)
from cmmd.flowspec import Exact, Patches, Schedule, Sliced
from cmmd.model import ConditionalMMDFlow
from cmmd.nets import UNet, count_parameters
from cmmd.projections import PatchProjections

# [method §5] (and §3 for lr, T_1, the caps), copied by hand from its table. Entries marked [code] are not in
# the table and come from the authors' scripts (FabianAltekrueger/Conditional_MMD_Flows).
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
                       train_steps=4000, batch_size=10),  # [code] 4,000 steps; [method §3]: batch 10 for large images
}
PAPER["ct-limited-angle"] = dict(PAPER["ct-lowdose"], angle_fraction=0.8)  # 800 of 1,000 angles, low-dose noise [code]
PYRAMIDS = {  # [method §5] and §4
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


TASK_FIELDS = ("observed_rows", "kernel_size", "blur_sigma", "factor", "noise_std", "angle_fraction", "low_dose")


@pytest.mark.parametrize("name", sorted(PAPER))
def test_single_level_paper_configs_equal_method(name):
    cfg, expected = get_config(name, "paper"), PAPER[name]
    assert cfg.profile == "paper" and cfg.experiment == name and len(cfg.levels) == 1 and cfg.changes is None
    lv, flow = cfg.levels[0], cfg.flow_config()
    for key in ("n_train", "x_shape", "y_shape", "n_networks", "train_steps", "batch_size", "max_steps"):
        if key in expected:
            assert getattr(cfg, key) == expected[key], key
    for key in TASK_FIELDS:
        if key in expected:
            assert getattr(cfg.task, key) == expected[key], key
    assert lv.step_size == flow.step_size == expected["step_size"]
    assert flow.schedule.momenta[0] == expected.get("momentum", 0.0)
    assert flow.schedule.steps[0] == expected["first_steps"] and flow.n_networks == expected["n_networks"]
    assert flow.lr == 5e-4 and cfg.max_increment == 1024  # [method §3]
    assert flow.grad_clip == expected.get("grad_clip")
    spec = flow.projection
    if "patch_size" in expected:
        assert isinstance(spec, Patches)
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
        assert spec == Sliced(expected["n_projections"])


@pytest.mark.parametrize("name", sorted(PYRAMIDS))
def test_pyramid_paper_configs_equal_method(name):
    cfg, expected = get_config(name, "paper"), PYRAMIDS[name]
    for key in ("n_train", "x_shape", "y_shape", "batch_size"):
        assert getattr(cfg, key) == expected[key], key
    for key in TASK_FIELDS:
        if key in expected:
            assert getattr(cfg.task, key) == expected[key], key
    assert tuple(lv.size for lv in cfg.levels) == expected["sizes"]  # 1/8 → 1/4 → 1/2 → 1
    assert tuple(lv.step_size for lv in cfg.levels) == expected["taus"]
    assert cfg.total_networks == expected["networks"]  # [method §5]: ≈156 / ≈147
    assert cfg.upsample_noise == expected["noise"] and cfg.momentum_max == expected["momentum_max"]
    for lv in cfg.levels:
        d = cfg.x_shape[0] * lv.size**2
        if lv.size < 32:  # full projections below 32 px with P = max(500, d)
            assert lv.projection == Sliced(max(500, d))
        else:
            assert lv.projection.patch_size == expected["top_patch"] and lv.projection.n_projections == expected["top_p"]
    if "top_windows" in expected:
        assert cfg.levels[-1].projection.windows == expected["top_windows"]
    schedules = cfg.schedules()
    momenta = [m for s in schedules for m in s.momenta]
    full_networks = sum(s.n_networks for lv, s in zip(cfg.levels, schedules) if isinstance(lv.projection, Sliced))
    # +0.01 per network up to .8 over the full-projection levels [code]; [method §5]: "up to .8" (CIFAR-10)
    assert max(momenta) == pytest.approx(min(0.8, 0.01 * (full_networks - 1))) and momenta[0] == 0.0
    assert all(m == 0.0 for m in schedules[-1].momenta)  # none at the patch level [code]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_experiment_builds_in_every_profile(name, profile):
    cfg = get_config(name, profile)
    assert cfg.experiment == name and cfg.profile == profile
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_train = 1
    for level in range(len(cfg.levels)):
        flow = cfg.flow_config(level)
        assert flow.schedule == cfg.schedules()[level]  # the model runs the schedule computed once
        gradient = flow.projection.gradient(cfg.level_shape(level), cfg.y_shape)
        assert callable(gradient)
        if isinstance(cfg.levels[level].projection, Patches):
            assert isinstance(gradient, PatchProjections) and gradient.x_shape == cfg.level_shape(level)
    if profile != "paper":
        paper = get_config(name, "paper")  # reduced: no more training pixels (the materials cpu tiles are smaller)
        assert cfg.n_train * math.prod(cfg.x_shape) <= paper.n_train * math.prod(paper.x_shape)
        assert cfg.total_networks <= paper.total_networks


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_a_reduced_profile_is_the_paper_plus_its_visible_changes(name):
    """cpu = paper.with_changes(**changes): nothing else differs, and every change differs from the paper."""
    paper = get_config(name, "paper")
    for profile in ("cpu", "smoke"):
        cfg = get_config(name, profile)
        assert isinstance(cfg.changes, Changes) and cfg.changes.why
        assert cfg == paper.with_changes(profile=profile, changes=cfg.changes, **cfg.changes.values)
        moved = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(paper, f.name)}
        assert moved - {"profile", "changes"} <= set(cfg.changes.values) | {"levels"}


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
        flow = cfg.flow_config(level, schedule=Schedule.constant(1, steps=2))
        model = ConditionalMMDFlow(shape, cfg.y_shape, net=net, config=flow)
        model.fit(x, y, generator=gen, progress=False)
        assert model.sample(y[:2], 3, generator=gen).shape == (2, 3, *shape)


def _fit_smoke(cfg, **changes):
    """Fit the one-level smoke flow of ``cfg`` with build_flow(**changes); returns (model, number of directions
    drawn per gradient call, recorded by a spy on the sliced gradient)."""
    x = torch.rand(cfg.n_train, *cfg.x_shape, generator=torch.Generator().manual_seed(1))
    y = torch.rand(cfg.n_train, *cfg.y_shape, generator=torch.Generator().manual_seed(2))
    model = cfg.build_flow(init_seed=0, **changes)
    model.fit(x, y, generator=torch.Generator().manual_seed(3), progress=False)
    return model


def test_every_build_flow_override_changes_what_runs(monkeypatch):
    """build_flow(n_projections=K) and every other override reach the gradient and the schedule that run, and the
    checkpoint records them."""
    import cmmd.flow

    drawn = []
    real = cmmd.flow.sliced_mmd2_grad

    def spy(x, y, n_projections, **kwargs):
        drawn.append(n_projections)
        return real(x, y, n_projections, **kwargs)

    monkeypatch.setattr(cmmd.flow, "sliced_mmd2_grad", spy)
    cfg = get_config("materials-superres", "smoke")  # full projections, P = 8
    base = _fit_smoke(cfg)
    assert set(drawn) == {8}
    drawn.clear()
    more = _fit_smoke(cfg, n_projections=13)
    assert set(drawn) == {13} and more.config.projection == Sliced(13)
    assert not torch.equal(more.particles, base.particles)
    drawn.clear()
    exact = _fit_smoke(cfg, projection=Exact())
    assert drawn == [] and exact.config.projection == Exact()
    longer = _fit_smoke(cfg, schedule=Schedule.constant(3, steps=2, momentum=0.5))
    assert longer.history.flow_steps == [2, 2, 2] and len(longer.networks) == 3
    for field, value in (("step_size", 0.25), ("lr", 1e-2), ("lr_schedule", "cosine"), ("train_steps", 5),
                         ("batch_size", 4), ("grad_clip", 0.5)):
        other = _fit_smoke(cfg, **{field: value})
        assert getattr(other.config, field) == value
        assert not all(torch.equal(a, b) for a, b in zip(other.networks[-1].state_dict().values(),
                                                           base.networks[-1].state_dict().values())), field
    state = more.state_dict()["config"]
    assert state["projection"] == {"kind": "sliced", "n_projections": 13}
    assert ConditionalMMDFlow.from_state_dict(more.state_dict(), net=cfg.network()).config == more.config
    with pytest.raises(ValueError, match="not FlowConfig fields.*n_projections"):
        cfg.build_flow(init_seed=0, n_projection=3)
    with pytest.raises(ValueError, match="exact gradient"):
        cfg.build_flow(init_seed=0, projection=Exact(), n_projections=3)


def test_patch_overrides_reach_the_patch_gradient():
    cfg = get_config("mnist-classcond", "smoke")
    model = cfg.build_flow(init_seed=0, n_projections=5)
    assert isinstance(model.gradient, PatchProjections) and model.gradient.n_projections == 5
    assert model.config.projection.windows == cfg.levels[0].projection.windows


def test_forward_models_match_the_shapes():
    for name in ("mnist-inpainting", "cifar10-inpainting", "materials-superres", "celeba-superres"):
        cfg = get_config(name, "paper")
        op = cfg.operator()
        assert tuple(op.x_shape) == cfg.x_shape and tuple(op.y_shape) == cfg.y_shape
    ct = get_config("ct-limited-angle", "paper").operator()
    assert ct.angles.numel() == 800
    assert torch.allclose(ct.angles, torch.arange(100, 900, dtype=torch.float64) * math.pi / 1000)  # [code]
    assert get_config("mnist-classcond", "paper").operator().scale == 10.0


def test_observe_is_the_operator_plus_the_tasks_noise():
    """Super-resolution: A x + σ ε with ε drawn from the generator; CT: the low-dose sinogram, its condition the FBP."""
    from cmmd.operators import add_gaussian_noise, lodopab_mu_scale, low_dose

    cfg = get_config("materials-superres", "cpu")
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    y = cfg.observe(x, generator=torch.Generator().manual_seed(1))
    expected = add_gaussian_noise(cfg.operator()(x), 0.01, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y, expected)
    big = torch.rand(1, 1, 64, 64)
    assert cfg.observe(big, generator=torch.Generator()).shape == (1, 1, 16, 16)  # A built for the image's size
    ct = get_config("ct-lowdose", "smoke")
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    sinogram = low_dose(ct.operator()(x), mu_scale=lodopab_mu_scale(32, ct.task.attenuation),
                        generator=torch.Generator().manual_seed(4))
    pairs = ct.training_pairs(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(pairs[0], x) and torch.equal(pairs[1], ct.operator().fbp(sinogram))
    with pytest.raises(TypeError, match="labels"):
        get_config("mnist-classcond", "cpu").observe(x)


def _water_disc(size: int, value: float) -> torch.Tensor:
    """(1, 1, size, size): ``value`` on the pixels whose centre lies in the inscribed disc (the field of view)."""
    t = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1
    return (value * ((t[None, :] ** 2 + t[:, None] ** 2) <= 1).float())[None, None]


@pytest.mark.parametrize("profile, value", [("cpu", 0.5), ("paper", 20.0 / 81.35858)])
def test_ct_attenuation_gives_water_lodopabs_mu(profile, value):
    """Water (0.5 of the book's −1000…1000 HU window; μ_water/μ_max in LoDoPaB's own units) attenuates with
    LoDoPaB's μ_water − μ_air = 19.98 m⁻¹: the central ray through a water disc filling the 26 cm field of view
    has optical depth 19.98 · 0.26 = 5.19, up to the rasterisation of the disc (its chord is the diameter within
    about one pixel, a relative error of 2/size)."""
    from cmmd.data.ct import CT_WINDOW_HU
    from cmmd.operators.noise import LODOPAB_FIELD_OF_VIEW, LODOPAB_MU_AIR, LODOPAB_MU_MAX, LODOPAB_MU_WATER, WINDOW_HU

    assert WINDOW_HU == CT_WINDOW_HU  # the window of the images is the one the attenuation assumes
    cfg = get_config("ct-lowdose", profile)
    size = cfg.x_shape[1] if profile == "cpu" else 64  # the paper's task on a smaller grid: μ scales with the pixel
    task = cfg.task
    x = _water_disc(size, value)
    depth = task.mu_scale((1, size, size)) * float(task.operator((1, size, size))(x).max())
    expected = (LODOPAB_MU_WATER - (LODOPAB_MU_AIR if profile == "cpu" else 0.0)) * LODOPAB_FIELD_OF_VIEW
    assert abs(depth - expected) <= expected * 2 / size
    # the earlier scaling (value 1 = μ_max for the windowed images) gave the water disc twice this depth
    if profile == "cpu":
        doubled = dataclasses.replace(task, attenuation=1.0)
        assert doubled.mu_scale((1, size, size)) / task.mu_scale((1, size, size)) == pytest.approx(
            LODOPAB_MU_MAX / (2 * (LODOPAB_MU_WATER - LODOPAB_MU_AIR)))
    with pytest.raises(ValueError, match="attenuation"):
        dataclasses.replace(task, attenuation=0.0)


def test_ct_photon_counts_of_training_phantoms_follow_the_poisson_model():
    """The counts behind the observations are the Poisson draws of rates 4096·e^{−μ A x}; on training phantoms
    (values <= 1 in the disc) every optical depth is at most μ(1)·26 cm = 2·19.98·0.26 = 10.39 (+ 2/size for
    the rasterisation), and the share of bins under 5 photons equals its Poisson expectation
    mean_b P(Poisson(λ_b) < 5) within 5 binomial standard errors. With the doubled attenuation of the
    earlier version the same phantoms exceed that depth bound and starve many more bins."""
    from cmmd.data import random_ellipse_phantoms
    from cmmd.operators.noise import LODOPAB_FIELD_OF_VIEW, LODOPAB_MU_AIR, LODOPAB_MU_WATER, LODOPAB_PHOTONS

    cfg = get_config("ct-lowdose", "cpu")
    size, task = cfg.x_shape[1], cfg.task
    x = random_ellipse_phantoms(64, size, generator=torch.Generator().manual_seed(0))
    clean = cfg.operator()(x)
    observed = cfg.observe(x, generator=torch.Generator().manual_seed(1))
    counts = task.photon_counts(observed, cfg.x_shape)
    rates = LODOPAB_PHOTONS * torch.exp(-task.mu_scale(cfg.x_shape) * clean)
    assert torch.equal(counts, torch.poisson(rates, generator=torch.Generator().manual_seed(1)))
    bound = 2 * (LODOPAB_MU_WATER - LODOPAB_MU_AIR) * LODOPAB_FIELD_OF_VIEW * (1 + 2 / size)
    assert float((task.mu_scale(cfg.x_shape) * clean).max()) <= bound
    lam = rates.double().flatten()
    below = torch.exp(-lam) * sum(lam**k / math.factorial(k) for k in range(5))  # P(N < 5) per bin
    expected, n = float(below.mean()), lam.numel()
    standard_error = math.sqrt(float((below * (1 - below)).sum())) / n
    measured = float((counts < 5).double().mean())
    assert abs(measured - expected) <= 5 * standard_error + 1 / n
    doubled = dataclasses.replace(task, attenuation=1.0)
    assert float((doubled.mu_scale(cfg.x_shape) * clean).max()) > bound
    starved = float((doubled.photon_counts(doubled.observe(x, cfg.x_shape, generator=torch.Generator().manual_seed(1)),
                                           cfg.x_shape) < 5).double().mean())
    assert starved > measured + 5 * standard_error
    with pytest.raises(ValueError, match="low-dose"):
        dataclasses.replace(task, low_dose=False).photon_counts(observed, cfg.x_shape)


def test_schedules_follow_the_authors_rule():
    """T_1 = 2^e and T_{l+1} = min(T_l + min(2^{e+l−1}, 1024), cap) [code]."""
    mnist = list(get_config("mnist-classcond", "paper").schedules()[0].steps)
    assert mnist[:8] == [16, 32, 64, 128, 256, 512, 1024, 2048]
    assert mnist[-1] == 30_000 and all(b - a <= 1024 for a, b in zip(mnist, mnist[1:]))
    assert get_config("materials-superres", "paper").schedules()[0].steps[:5] == (8, 16, 32, 64, 128)
    assert max(get_config("ct-lowdose", "paper").schedules()[0].steps) == 10_000
    cifar = get_config("cifar10-classcond", "paper").schedules()
    assert tuple(s.n_networks for s in cifar) == (44, 38, 32, 42)
    assert cifar[1].steps[:3] == (1024, 2048, 3072) and cifar[2].steps[:2] == (8192, 9216)
    assert cifar[0].total_steps >= 700_000 > sum(cifar[0].steps[:-1])
    assert Schedule.growing(4, first_steps=16, max_increment=1024).steps == (16, 32, 64, 128)
    assert Schedule.growing(first_steps=2, max_increment=0, total_steps=5).steps == (2, 2, 2)
    assert Schedule.growing(3, first_steps=1, momentum=0.5, momentum_increment=0.2, momentum_max=0.8).momenta == (
        0.5, 0.7, 0.8)
    with pytest.raises(ValueError, match="momenta.*diverges"):
        Schedule((1,), (1.0,))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_paper_memory_fits_a_16_gb_gpu(name):
    paper = estimate_gpu_memory_gb(get_config(name, "paper"))
    cpu = estimate_gpu_memory_gb(get_config(name, "cpu"))
    assert 0.5 < paper < 16.0
    assert cpu <= paper


def test_memory_estimate_grows_with_the_problem():
    cfg = get_config("mnist-classcond", "paper")
    bigger = cfg.with_changes(n_train=2 * cfg.n_train)
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
        get_config("mnist-classcond", "cpu").flow_config(3)
    with pytest.raises(ValueError, match="projection must be Exact"):
        get_config("mnist-classcond", "cpu").with_changes(level=dict(projection=100))


def test_summary_rows_come_from_the_config_and_leave_the_global_rng_alone():
    cfg = get_config("ct-limited-angle", "paper")
    before = torch.get_rng_state()
    rows = summary(cfg)
    assert torch.equal(torch.get_rng_state(), before)
    assert rows["angles measured"] == "800 of 1000 (nos. 100–899)" and rows["noise"] == "Poisson, 4,096 photons"
    assert rows["networks L"] == cfg.total_networks == 40
    assert rows["flow steps in total"] == cfg.schedules()[0].total_steps
    with torch.random.fork_rng(devices=[]):
        assert rows["UNet parameters"] == count_parameters(cfg.network())
    assert summary(get_config("mnist-inpainting", "paper"))["observed rows"] == "bottom 10 of 28"
    cpu = summary(get_config("ct-limited-angle", "cpu"))
    assert cpu["projections"] == "patches p=4, windows 4×12, 8×4, 16, 32, 64, P=100 each"
    pyramid = summary(get_config("cifar10-classcond", "paper"))  # every level's momenta, not only the finest
    assert pyramid["networks, steps, momentum (4×4)"] == "44 networks, T = 16 … 30000, m = 0 … 0.43"


def test_settings_table_prints_exactly_what_the_profile_changes():
    from cmmd.experiments.mnist import CPU_CHOICE

    cpu, paper = get_config("mnist-inpainting", "cpu"), get_config("mnist-inpainting", "paper")
    text = settings_table([cpu], [paper])
    lines = text.splitlines()
    assert lines[0] == "**mnist-inpainting**"
    assert lines[2] == "| setting | profile `paper` | changed in profile `cpu` |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[2].rstrip(" |") for line in lines[4:] if line.startswith("| ")}
    assert rows["observed rows"] == "·" and rows["training pairs N"] == "4,000" and rows["projections"] == "patches p=5, windows 5, 10, 15, 20, P=100 each"
    changed = {label for label, value in rows.items() if value != "·"}
    ours, theirs = summary(cpu), summary(paper)
    assert changed == {label for label in theirs if str(ours[label]) != str(theirs[label])}
    chosen = CPU_CHOICE["mnist-inpainting"][0]
    assert lines[-1].startswith(f"*Why `cpu` differs:* The first 4,000 training images (offline) and the candidate `{chosen}`")
    assert "· : as in profile `paper`." in lines and rows["gradient clipping"] == "·"
    ct = settings_table([get_config("ct-lowdose", "cpu")], [get_config("ct-lowdose", "paper")])
    assert "({ref}`method §7 <method-7>`)" in ct and "[method §7]" not in ct  # a link on the book page
    assert "| gradient clipping | none | · |" in text
    paper_only = settings_table([paper], [paper]).splitlines()
    assert paper_only[2] == "| setting | profile `paper` |"


def test_materials_tile_observations_periodic_or_cut_from_the_whole_slice():
    """'periodic' observes each tile on its own grid (the authors); 'cropped' cuts A(slice) at the tile's place.
    Reference: the blur-and-stride sum y_ij = Σ_kl g_k g_l x[4i + k − 6, 4j + l − 6] written out for one pixel."""
    from cmmd.operators.blur import gaussian_kernel_1d

    slices = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    task = get_config("materials-superres", "paper").task
    tiles, periodic = task.tile_pairs(slices, 32)
    assert tiles.shape == (18, 1, 32, 32) and torch.equal(periodic, task.operator((1, 32, 32))(tiles))
    _, cropped = dataclasses.replace(task, tile_observations="cropped").tile_pairs(slices, 32)
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
        dataclasses.replace(task, tile_observations="wrapped")
