"""cmmd.model: determinism, batch independence, checkpoints that resume bit-identically, clear errors."""

import dataclasses

import pytest
import torch

from cmmd.flowspec import Exact, Schedule, Sliced
from cmmd.model import ConditionalMMDFlow, FlowConfig

TINY = FlowConfig(schedule=Schedule.growing(3, first_steps=4, max_increment=0, momentum=0.5), projection=Sliced(20),
                  train_steps=15, batch_size=32, lr=1e-3, hidden=16, depth=2, sample_batch=50)


def pairs(n: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def trained(config: FlowConfig = TINY, **fit_kwargs) -> ConditionalMMDFlow:
    x, y = pairs()
    return ConditionalMMDFlow((2,), (1,), config=config).fit(
        x, y, generator=torch.Generator().manual_seed(5), progress=False, **fit_kwargs
    )


def assert_same_networks(a: ConditionalMMDFlow, b: ConditionalMMDFlow) -> None:
    assert len(a.networks) == len(b.networks)
    for net_a, net_b in zip(a.networks, b.networks):
        for (name, pa), (_, pb) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
            assert torch.equal(pa, pb), name


def test_schedule_follows_the_paper():
    cfg = FlowConfig(schedule=Schedule.growing(12, first_steps=16, max_increment=1024, max_steps=30_000))
    assert list(cfg.schedule.steps) == [16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096, 5120, 6144]
    assert list(Schedule.growing(3, first_steps=25, max_increment=0).steps) == [25, 25, 25]
    paper = dict(max_increment=1024)
    assert list(Schedule.growing(5, first_steps=8, **paper).steps) == [8, 16, 32, 64, 128]  # materials: 2^3
    assert Schedule.growing(40, first_steps=8, max_steps=10_000, **paper).steps[-1] == 10_000


def test_fit_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = trained(), trained()
    assert torch.equal(torch.get_rng_state(), before)
    assert_same_networks(a, b)
    assert len(a.history.train_loss) == TINY.n_networks


def test_samples_are_deterministic_and_do_not_depend_on_the_batch_size():
    model = trained()
    y = torch.tensor([[0.5], [-1.0], [2.0]])
    reference = model.sample(y, 20, generator=torch.Generator().manual_seed(9), batch_size=64)
    assert reference.shape == (3, 20, 2)
    for batch in (1, 7, 64):
        again = model.sample(y, 20, generator=torch.Generator().manual_seed(9), batch_size=batch)
        # Same noise, same networks: only BLAS blocking could differ, at float32 rounding level.
        assert torch.allclose(again, reference, rtol=0, atol=1e-6)
    other = model.sample(y, 20, generator=torch.Generator().manual_seed(10))
    assert not torch.allclose(other, reference)


def test_interrupted_fit_resumes_to_bit_identical_networks(tmp_path, monkeypatch):
    uninterrupted = trained()
    calls = {"n": 0}
    original = ConditionalMMDFlow._train_network

    def crash_on_third(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, *args)

    monkeypatch.setattr(ConditionalMMDFlow, "_train_network", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        trained(checkpoint_dir=tmp_path)
    monkeypatch.setattr(ConditionalMMDFlow, "_train_network", original)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # the format needs no pickled objects
    assert len(saved["networks"]) == 2  # the two finished networks survived the interruption
    resumed = trained(checkpoint_dir=tmp_path, resume=True)
    assert_same_networks(resumed, uninterrupted)
    assert resumed.history.train_loss == uninterrupted.history.train_loss


def test_existing_checkpoint_is_never_overwritten(tmp_path):
    trained(checkpoint_dir=tmp_path)
    stamp = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="resume=True"):
        trained(checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    trained(checkpoint_dir=tmp_path)
    other = dataclasses.replace(TINY, hidden=8)
    with pytest.raises(ValueError, match="another configuration.*hidden"):
        trained(config=other, checkpoint_dir=tmp_path, resume=True)
    x, y = pairs(seed=1)
    with pytest.raises(ValueError, match="training data"):
        ConditionalMMDFlow((2,), (1,), config=TINY).fit(x, y, checkpoint_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        trained(checkpoint_dir=tmp_path / "empty", resume=True)


def test_save_and_load_give_the_same_samples(tmp_path):
    model = trained()
    model.save(tmp_path / "flow.pt")
    loaded = ConditionalMMDFlow.load(tmp_path / "flow.pt")
    y = torch.tensor([[0.3]])
    a = model.sample(y, 10, generator=torch.Generator().manual_seed(1))
    b = loaded.sample(y, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert loaded.history.train_loss == model.history.train_loss


@pytest.mark.parametrize("projection", [Sliced(13), Exact()], ids=str)
def test_a_saved_flow_loads_back_with_its_projection_and_schedule(tmp_path, projection):
    schedule = Schedule.growing(3, first_steps=2, max_increment=4, momentum=0.2, momentum_increment=0.3,
                                momentum_max=0.6)
    assert schedule.steps == (2, 4, 8) and schedule.momenta == pytest.approx((0.2, 0.5, 0.6))
    config = dataclasses.replace(TINY, schedule=schedule, projection=projection, train_steps=3)
    trained(config=config).save(tmp_path / "flow.pt")
    loaded = ConditionalMMDFlow.load(tmp_path / "flow.pt")
    assert loaded.config.projection == projection and type(loaded.config.projection) is type(projection)
    assert loaded.config.schedule == schedule
    assert loaded.config == config


def test_resume_refuses_a_checkpoint_of_other_projections(tmp_path):
    trained(config=dataclasses.replace(TINY, projection=Sliced(13)), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"another configuration: config: .*'n_projections': 13"):
        trained(config=dataclasses.replace(TINY, projection=Sliced(8)), checkpoint_dir=tmp_path, resume=True)


def test_clear_errors():
    model = ConditionalMMDFlow((2,), (1,), config=TINY)
    with pytest.raises(RuntimeError, match="call fit"):
        model.sample(torch.zeros(1, 1), 5)
    x, y = pairs()
    with pytest.raises(ValueError, match=r"y must have shape \(N, \*\(1,\)\)"):
        model.fit(x, torch.cat([y, y], 1), progress=False)
    with pytest.raises(ValueError, match="same number of pairs"):
        model.fit(x, y[:-1], progress=False)
    fitted = trained()
    with pytest.raises(ValueError, match="like the training observations"):
        fitted.sample(torch.zeros(4, 2), 5)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(torch.zeros(4, 1), 0)
    with pytest.raises(ValueError, match="x_shape"):
        ConditionalMMDFlow((), (1,))
    with pytest.raises(ValueError, match="lr_schedule"):
        ConditionalMMDFlow((2,), (1,), config=dataclasses.replace(TINY, lr_schedule="step")).fit(x, y, progress=False)


def test_a_fitted_flow_moves_samples_toward_the_posterior():
    """After fitting, samples for y = x1 + x2 + noise have x1 + x2 close to y (a sanity check, not accuracy)."""
    cfg = dataclasses.replace(TINY, schedule=Schedule.growing(4, first_steps=10, max_increment=0, momentum=0.5),
                              train_steps=150, hidden=64)
    x, y = pairs(n=600)
    model = ConditionalMMDFlow((2,), (1,), config=cfg).fit(x, y, generator=torch.Generator().manual_seed(0), progress=False)
    y_test = torch.tensor([[-2.0], [0.0], [2.0]])
    samples = model.sample(y_test, 200, generator=torch.Generator().manual_seed(1))
    # Prior noise z ~ U[0,1]^2 has x1 + x2 ≈ 1 ± 0.4; posterior x1 + x2 ≈ y ± 0.1 (+ learning error).
    sums = samples.sum(-1).mean(1)
    assert torch.allclose(sums, y_test.squeeze(1), atol=0.5), sums
