"""cmmd.distributed: the flow step, the network training and a whole fit on 2 CPU processes (gloo).

The 2-process checks run in one ``torch.multiprocessing`` spawn (module fixture ``two_ranks``): each rank
computes the same things and saves them; the tests compare them with one process, here.

**Tolerance of a split sum.** One process computes g = (c/P) Σ_{p=1}^P t_p with t_p = ∂F_1,p ξ_p (a matrix
product accumulating P products, blocks added in order); K processes compute K partial sums of ≈P/K terms and
the all-reduce adds the K partials. Any order of summing n float32 terms is within γ_n Σ|t_p| of the exact sum,
γ_n = n·u/(1 − n·u), u = 2⁻²⁴ (each product t_p adds one more rounding, so n = P + 1 bounds both the
single sum and the split one: depth P/K + K ≤ P + 1). So |g₁ − g_K| ≤ 2 γ_{P+1} (c/P) Σ_p |t_p| + 2u|g| (the
final scaling). Since |∂F_1| ≤ 1/N + (N − 1)/N² < 2/N and every direction entry |ξ_pj| ≤ 1,
(c/P) Σ_p |t_pj| ≤ 2c/N: the bound used below is 2 γ_{P+1}·2c/N + 2u|g|, about 1e-5 of a typical entry of g,
while sharing the directions wrongly (a share lost or counted twice, other directions) changes g by O(|g|).
For patches the same holds per scale with c·λ_s (each pixel lies at most once in a window of each scale) and
n = S·(P + 1) + K terms over the S scales.

A flow segment of T steps: the 1D gradients depend on the particles only through their ranks, so while no two
projected values swap (they would have to lie within ~1e-6 of each other), step t differs only by the
rounding above, ε; the momentum state differs by at most ε Σ_{s≤t} m^{t−s} and the particles by
τN Σ_t (that) plus T rounding errors u·|x| of the update on either side.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import cmmd.sliced
from cmmd.distributed import (Cluster, ShardedPatches, ShardedSliced, StopAfter, TrainingFlow, TrainingStopped,
                              owned_parts, share, train_network_sharded, wrap_model)
from cmmd.flow import conditional_mmd_flow
from cmmd.flowspec import Schedule, Sliced
from cmmd.model import ConditionalMMDFlow, FlowConfig, train_network
from cmmd.nets import MLP
from cmmd.projections import patch_gradient
from cmmd.sliced import sliced_factor, sliced_mmd2_grad

U = 2.0**-24
WORLD = 2
N, D, P = 48, 12, 16
FLOW_STEPS, STEP_SIZE, MOMENTUM = 6, 1.0, 0.5


def gamma(n: int) -> float:
    return n * U / (1 - n * U)


def sliced_tolerance(g: torch.Tensor, n: int, d: int, p: int) -> torch.Tensor:
    """2 γ_{P+1} · 2c/N + 2u|g| (module docstring)."""
    return 2 * gamma(p + 1) * 2 * sliced_factor(d) / n + 2 * U * g.abs()


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {"x": torch.rand(N, D, generator=g), "y": torch.randn(N + 8, D, generator=g),
            "images": torch.rand(N, 1 * 8 * 8 + 3, generator=g), "targets": torch.rand(N + 4, 1 * 8 * 8 + 3, generator=g)}


def patches():
    return patch_gradient((1, 8, 8), (3,), patch_size=2, windows=(2, 4, 8), weights=(0.5, 1.0, 1.0),
                          n_projections=12, max_block=5 * (2 * N + 4))  # blocks of 5 directions


def toy_config() -> FlowConfig:
    return FlowConfig(schedule=Schedule.constant(2, steps=3, momentum=0.5), projection=Sliced(8), train_steps=4,
                      batch_size=16, hidden=16, depth=2, fourier_features=4)


def toy_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(40, 2, generator=g), torch.randn(40, 1, generator=g)


def single_results() -> dict:
    """What one process computes for everything a rank computes in :func:`_rank_main`."""
    data, out = inputs(), {}
    out["sliced"] = sliced_mmd2_grad(data["x"], data["y"], P, generator=torch.Generator().manual_seed(1))
    saved = cmmd.sliced.DIRECTIONS_AT_ONCE
    cmmd.sliced.DIRECTIONS_AT_ONCE = 1  # directions drawn block by block
    try:
        out["sliced_blocks"] = sliced_mmd2_grad(data["x"], data["y"], P, generator=torch.Generator().manual_seed(1),
                                                max_block=3 * (2 * N + 8))
    finally:
        cmmd.sliced.DIRECTIONS_AT_ONCE = saved
    out["patches"] = patches()(data["images"], data["targets"], torch.Generator().manual_seed(2))
    x, y = data["x"][:, :10], data["x"][:, 10:]
    out["flow"] = conditional_mmd_flow(x, y, data["y"][:, :10], data["y"][:, 10:], FLOW_STEPS, step_size=STEP_SIZE,
                                       momentum=MOMENTUM, n_projections=P,
                                       generator=torch.Generator().manual_seed(4)).x
    return out


def _rank_main(rank: int, folder: str) -> None:
    """One rank of the spawned pair: everything of :func:`single_results`, split over the ranks, plus training."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD)
    cluster = Cluster(rank, WORLD, torch.device("cpu"))
    data, out = inputs(), {}
    g = torch.Generator().manual_seed(1)
    out["sliced"] = ShardedSliced(P, cluster)(data["x"], data["y"], g)
    out["sliced_generator"] = g.get_state()
    cmmd.sliced.DIRECTIONS_AT_ONCE = 1
    out["sliced_blocks"] = ShardedSliced(P, cluster, max_block=3 * (2 * N + 8))(
        data["x"], data["y"], torch.Generator().manual_seed(1))
    cmmd.sliced.DIRECTIONS_AT_ONCE = 1 << 24
    g = torch.Generator().manual_seed(2)
    out["patches"] = ShardedPatches(patches(), cluster)(data["images"], data["targets"], g)
    out["patches_generator"] = g.get_state()
    x, y = data["x"][:, :10], data["x"][:, 10:]
    out["flow"] = conditional_mmd_flow(x, y, data["y"][:, :10], data["y"][:, 10:], FLOW_STEPS, step_size=STEP_SIZE,
                                       momentum=MOMENTUM, gradient=ShardedSliced(P, cluster),
                                       generator=torch.Generator().manual_seed(4)).x
    out["network"] = _train_one_network(cluster)
    out["fit"] = _fit_toy(cluster, os.path.join(folder, "ckpt"))
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def _train_one_network(cluster: Cluster | None) -> dict:
    """A few Adam steps of a small MLP on random pairs: on the ranks, or in one process (``None``)."""
    g = torch.Generator().manual_seed(5)
    x, y, target = torch.rand(64, 2, generator=g), torch.rand(64, 1, generator=g), torch.randn(64, 2, generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP(2, 1, hidden=16, depth=2)
    config = FlowConfig(train_steps=5, batch_size=20, lr=1e-2, lr_schedule="cosine", grad_clip=1.0)
    generator = torch.Generator().manual_seed(6)
    if cluster is None:
        loss = train_network(net, x, y, target, config, generator)
    else:
        loss = train_network_sharded(net, x, y, target, config, generator, cluster)
    return {"weights": net.state_dict(), "loss": loss, "generator": generator.get_state()}


def _fit_toy(cluster: Cluster, folder: str) -> dict:
    """A whole 2-network fit of a toy vector flow on the ranks, with checkpoints, and its networks."""
    x, y = toy_pairs()
    model = TrainingFlow.wrap(ConditionalMMDFlow((2,), (1,), config=toy_config()), cluster)
    model.fit(x, y, generator=torch.Generator().manual_seed(8), checkpoint_dir=folder, progress=False)
    return {"weights": [net.state_dict() for net in model.networks], "particles": model.particles,
            "history": model.history}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("ranks")
    mp.spawn(_rank_main, args=(str(folder),), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict:
    return single_results()


# ---------------------------------------------------------------------- pure helpers
def test_shares_partition_the_items_in_order():
    for total in (0, 1, 7, 16, 500):
        for world in (1, 2, 3, 8):
            bounds = [share(total, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1


def test_owned_parts_cut_the_concatenated_blocks():
    blocks = [torch.arange(0, 5), torch.arange(5, 8), torch.arange(8, 15)]
    assert torch.cat(list(owned_parts(iter(blocks), 4, 10))).tolist() == list(range(4, 10))
    assert list(owned_parts(iter(blocks), 15, 15)) == []


def test_one_process_cluster_changes_nothing(gen):
    x, y = torch.rand(30, 5, generator=gen), torch.rand(30, 5, generator=gen)
    cluster = Cluster(0, 1, torch.device("cpu"))
    expected = sliced_mmd2_grad(x, y, 9, generator=torch.Generator().manual_seed(1))
    got = ShardedSliced(9, cluster)(x, y, torch.Generator().manual_seed(1))
    assert torch.equal(got, expected)


# ---------------------------------------------------------------------- 2 processes against 1
def _assert_within(got: torch.Tensor, expected: torch.Tensor, tolerance: torch.Tensor, what: str) -> None:
    excess = (got - expected).abs() - tolerance
    assert bool((excess <= 0).all()), f"{what}: off by up to {float(excess.max()):.3g} beyond the rounding bound"


def test_sliced_step_on_two_ranks_equals_one_process(two_ranks, single):
    for key in ("sliced", "sliced_blocks"):
        expected = single[key]
        for rank in two_ranks:
            _assert_within(rank[key], expected, sliced_tolerance(expected, N, D, P), key)
        assert torch.equal(two_ranks[0][key], two_ranks[1][key]), "the all-reduce must give every rank the same sum"
    after = torch.Generator().manual_seed(1)
    sliced_mmd2_grad(*[inputs()[k] for k in ("x", "y")], P, generator=after)
    assert torch.equal(two_ranks[1]["sliced_generator"], after.get_state()), "the shared stream must advance as in one process"


def test_patch_step_on_two_ranks_equals_one_process(two_ranks, single):
    base = patches()
    scales = len(base.scales)
    n_terms = scales * (base.n_projections + 1) + WORLD
    per_pixel = sum(abs(s.weight) for s in base.scales) * base.constant() * 2 / N
    expected = single["patches"]
    tolerance = 2 * gamma(n_terms) * per_pixel + 2 * U * expected.abs()
    for rank in two_ranks:
        _assert_within(rank["patches"], expected, tolerance, "patches")
    assert torch.equal(two_ranks[0]["patches"], two_ranks[1]["patches"])
    assert float(expected.abs().max()) > 1e3 * float(tolerance.max()), "the bound must be far below the gradient"
    after = torch.Generator().manual_seed(2)
    data = inputs()
    base(data["images"], data["targets"], after)
    assert torch.equal(two_ranks[0]["patches_generator"], after.get_state())


def test_flow_segment_on_two_ranks_equals_one_process(two_ranks, single):
    step_bound = sliced_tolerance(single["sliced"].new_ones(()) * 0, N, D, P)  # ε without the |g| term
    g_max = float(single["sliced"].abs().max())
    eps = float(step_bound) + 2 * U * g_max * 10  # |g| of a later step: a generous 10x the first step's largest
    velocity = [eps * sum(MOMENTUM**k for k in range(t + 1)) for t in range(FLOW_STEPS)]
    x_max = float(single["flow"].abs().max()) + 1
    bound = STEP_SIZE * N * sum(velocity) + 2 * FLOW_STEPS * U * x_max
    for rank in two_ranks:
        diff = float((rank["flow"] - single["flow"]).abs().max())
        assert diff <= bound, f"flow segment: {diff:.3g} > {bound:.3g}"
    assert torch.equal(two_ranks[0]["flow"], two_ranks[1]["flow"])


def test_sharded_network_training_matches_one_process(two_ranks):
    one = _train_one_network(None)
    ranks = [r["network"] for r in two_ranks]
    for name, weight in one["weights"].items():
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), f"ranks differ in {name}"
        # 5 Adam steps from the same minibatches: the DDP mean gradient equals one process's up to rounding
        torch.testing.assert_close(ranks[0]["weights"][name], weight, rtol=1e-4, atol=1e-5)
    assert ranks[0]["loss"] == ranks[1]["loss"] and math.isclose(ranks[0]["loss"], one["loss"], rel_tol=1e-4)
    assert torch.equal(ranks[0]["generator"], one["generator"])


def test_a_fit_on_two_ranks_ends_identical_on_both(two_ranks):
    first, second = (r["fit"] for r in two_ranks)
    assert len(first["weights"]) == 2
    for a, b in zip(first["weights"], second["weights"]):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(first["particles"], second["particles"])
    assert first["history"] == second["history"]


# ---------------------------------------------------------------------- one process: stop and resume
def test_stop_after_then_resume_equals_an_uninterrupted_pyramid_fit(tmp_path):
    from cmmd.experiments import get_config

    exp = get_config("cifar10-classcond", "smoke")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(exp.n_train, *exp.x_shape, generator=g)
    y = exp.operator().encode(torch.randint(0, 10, (exp.n_train,), generator=g))
    cluster = Cluster(0, 1, torch.device("cpu"))

    def fit(stop: int | None, folder, resume: bool):
        model = wrap_model(exp.build_flow(init_seed=1), cluster, StopAfter(stop))
        model.fit(x, y, generator=torch.Generator().manual_seed(2), checkpoint_dir=folder, resume=resume,
                  progress=False)
        return model

    whole = fit(None, tmp_path / "whole", False)
    assert len(whole.levels) == 4 and len(whole.networks) >= 4
    with pytest.raises(TrainingStopped):
        fit(3, tmp_path / "cut", False)  # stops inside the second level
    resumed = fit(None, tmp_path / "cut", True)
    for a, b in zip(whole.networks, resumed.networks, strict=True):
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
