"""Hostile but realistic use of the flows (issue 15): crafted and damaged files, bad sizes and configs,
low-precision inputs, huge numbers of projections, resume fingerprints, kills during a save."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import cmmd.sliced as sliced
from cmmd._checks import check_floating
from cmmd.checkpoint import CheckpointError
from cmmd.energy import mmd2_grad
from cmmd.experiments import get_config
from cmmd.flowspec import Patches, Schedule, Sliced
from cmmd.model import ConditionalMMDFlow, FlowConfig
from cmmd.projections import PatchProjections
from cmmd.pyramid import PyramidFlow

SCHEDULE = dict(n_networks=2, first_steps=3, max_increment=0, momentum=0.5)
TINY = FlowConfig(schedule=Schedule.growing(**SCHEDULE), projection=Sliced(10),
                  train_steps=5, batch_size=16, lr=1e-3, hidden=8, depth=1, fourier_features=0, sample_batch=32)
ROOT = Path(__file__).resolve().parents[1]


def pairs(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return x, x.sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)


def fit(config: FlowConfig = TINY, x=None, y=None, **kwargs) -> ConditionalMMDFlow:
    if x is None:
        x, y = pairs()
    return ConditionalMMDFlow((2,), (1,), config=config).fit(
        x, y, generator=torch.Generator().manual_seed(3), progress=False, **kwargs)


def tiny_pyramid() -> PyramidFlow:
    levels = [ConditionalMMDFlow((1, s, s), (3,), config=TINY) for s in (2, 4)]
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.rand(40, 3, generator=torch.Generator().manual_seed(1))
    return PyramidFlow(levels).fit(x, y, generator=torch.Generator().manual_seed(2), progress=False)


@pytest.fixture(scope="module")
def flow() -> ConditionalMMDFlow:
    return fit()


# ---------------------------------------------------------------------- 1. loading never runs code
class _Payload:
    """Unpickling this object would create the file ``marker`` (what a crafted checkpoint could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_a_crafted_file_cannot_run_code_on_any_loading_path(tmp_path, flow):
    marker = tmp_path / "code-ran"
    crafted = {**flow.state_dict(), "payload": _Payload(marker)}
    torch.save(crafted, tmp_path / "flow.pt")
    with pytest.raises(CheckpointError, match=r"flow\.pt is not a readable cmmd file.*nothing in it was run"):
        ConditionalMMDFlow.load(tmp_path / "flow.pt")
    torch.save({"format": 2, "kind": "pyramid", "levels": [], "payload": _Payload(marker)}, tmp_path / "pyr.pt")
    with pytest.raises(CheckpointError, match=r"pyr\.pt is not a readable cmmd file"):
        PyramidFlow.load(tmp_path / "pyr.pt")
    (tmp_path / "ckpt").mkdir()
    torch.save({**crafted, "kind": "checkpoint"}, tmp_path / "ckpt" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt is not a readable cmmd file"):
        fit(checkpoint_dir=tmp_path / "ckpt", resume=True)
    with (tmp_path / "plain.pkl").open("wb") as stream:  # a plain pickle, not a torch zip file
        pickle.dump(_Payload(marker), stream, protocol=2)
    with pytest.raises(CheckpointError, match=r"plain\.pkl is not a readable cmmd file"):
        ConditionalMMDFlow.load(tmp_path / "plain.pkl")
    assert not marker.exists()


# ---------------------------------------------------------------------- 2. sizes, configs, dtypes, projections
@pytest.mark.parametrize("batch", [-1, 0, 2.5, True])
def test_every_sampling_path_checks_batch_size(flow, batch):
    y = torch.zeros(3, 1)
    z, y_rep = flow.start(y, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        flow.transport(z, y_rep, batch_size=batch)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        flow.sample(y, 4, batch_size=batch)


def test_pyramid_sampling_checks_batch_size():
    pyramid = tiny_pyramid()
    for batch in (-1, 0):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            pyramid.sample(torch.zeros(2, 3), 3, batch_size=batch)
    assert pyramid.sample(torch.zeros(2, 3), 3, batch_size=1).shape == (2, 3, 1, 4, 4)


@pytest.mark.parametrize("field, value", [
    ("sample_batch", -1), ("grad_clip", -1.0), ("batch_size", 0), ("train_steps", 0), ("lr", float("nan")),
    ("lr", 0.0), ("step_size", -1.0), ("hidden", True), ("lr_schedule", "step"), ("schedule", [3, 3]),
    ("projection", 10),
])
def test_flow_config_is_validated_at_construction(field, value):
    with pytest.raises(ValueError, match=f"FlowConfig.{field}"):
        dataclasses.replace(TINY, **{field: value})


@pytest.mark.parametrize("field, value, message", [
    ("n_networks", 0, "n_networks"), ("momentum", 1.0, r"Schedule.momenta\[network 1\].*diverges"),
    ("max_increment", -1, "max_increment"), ("first_steps", 2.0, "first_steps"),
    ("momentum_increment", -0.1, "momentum_increment"),
])
def test_schedule_is_validated_at_construction(field, value, message):
    with pytest.raises(ValueError, match=message):
        Schedule.growing(**{**SCHEDULE, field: value})


def test_projections_are_validated_at_construction():
    with pytest.raises(ValueError, match="Sliced.n_projections"):
        Sliced(0)
    with pytest.raises(ValueError, match="Patches.n_projections"):
        Patches(patch_size=2, windows=(2,), weights=(1.0,), n_projections=0)
    with pytest.raises(ValueError, match="one weight per window"):
        Patches(patch_size=2, windows=(2, 4), weights=(1.0,), n_projections=4)


def test_growing_momentum_must_stay_below_one():
    with pytest.raises(ValueError, match=r"Schedule.momenta\[network 11\].*diverges"):
        Schedule.growing(30, first_steps=3, momentum=0.5, momentum_increment=0.05, momentum_max=1.0)
    assert max(Schedule.growing(30, first_steps=3, momentum=0.5, momentum_increment=0.05, momentum_max=0.8).momenta) \
        == 0.8


def test_experiment_configs_and_build_flow_changes_are_validated():
    cfg = get_config("mnist-classcond", "smoke")
    with pytest.raises(ValueError, match="ExperimentConfig.batch_size"):
        cfg.with_changes(batch_size=0)
    with pytest.raises(ValueError, match=r"levels\[0\].step_size"):
        cfg.with_changes(levels=(dataclasses.replace(cfg.levels[0], step_size=-1.0),))
    with pytest.raises(ValueError, match="FlowConfig.lr"):
        cfg.build_flow(init_seed=0, lr=-1.0)
    with pytest.raises(ValueError, match=r"\['learning_rate'\] are not FlowConfig fields"):
        cfg.build_flow(init_seed=0, learning_rate=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_refused_with_the_fix(dtype, flow):
    x, y = pairs()
    with pytest.raises(ValueError, match=r"x has dtype .*convert it with x\.float\(\)"):
        check_floating("x", x.to(dtype))
    with pytest.raises(ValueError, match=r"convert it with x\.float\(\)"):
        ConditionalMMDFlow((2,), (1,), config=TINY).fit(x.to(dtype), y.to(dtype), progress=False)
    with pytest.raises(ValueError, match=r"convert it with y\.float\(\)"):
        flow.sample(y[:2].to(dtype), 3)
    with pytest.raises(ValueError, match=r"convert it with x\.float\(\)"):
        sliced.sliced_mmd2_grad(x.to(dtype), x.to(dtype), 5)


def test_huge_numbers_of_projections_are_drawn_block_by_block(monkeypatch):
    x, _ = pairs(50)
    y = x + 0.5
    drawn = []

    class Enough(Exception):
        pass

    def record(n, d, **kwargs):
        drawn.append(n)
        raise Enough  # a real run of 10⁹ directions would take hours; the first block tells the memory

    monkeypatch.setattr(sliced, "random_directions", record)
    with pytest.raises(Enough):
        sliced.sliced_mmd2_grad(x, y, 10**9, max_block=1 << 16)
    assert drawn[0] * (x.shape[0] + y.shape[0]) <= 1 << 16
    with pytest.raises(Enough):
        sliced.sliced_mmd2(x, y, 10**9, max_block=1 << 16)
    assert drawn[1] * (x.shape[0] + y.shape[0]) <= 1 << 16


def test_patch_projections_draw_a_huge_p_block_by_block(monkeypatch):
    proj = PatchProjections((1, 4, 4), (2,), patch_size=2, windows=[2], weights=[1.0], n_projections=10**9,
                            max_block=1 << 12)
    drawn = []

    def record(self, scale, generator, like, count=None):
        drawn.append(self.n_projections if count is None else count)
        raise OverflowError("stop after the first draw")

    monkeypatch.setattr(PatchProjections, "directions", record)
    joint = torch.rand(30, 18, generator=torch.Generator().manual_seed(0))
    with pytest.raises(OverflowError, match="first draw"):
        proj(joint, joint.flip(0), torch.Generator().manual_seed(1))
    assert drawn[0] * 60 <= 1 << 12


def test_blocked_directions_keep_the_numbers_of_one_draw_and_stay_unbiased(monkeypatch):
    x, y = pairs(40)
    y = y.expand(40, 2) + 0.3
    # P·d within one draw: exactly the numbers of drawing all P directions at once (the chapters' case).
    reference_xi = sliced.random_directions(64, 2, generator=torch.Generator().manual_seed(7))
    points = torch.cat([x, y])
    reference = torch.zeros_like(x)
    for start in range(0, 64, 5):  # max_block = 400 sorts 5 rows of 80 values at a time
        xi = reference_xi[start:start + 5]
        reference.addmm_(sliced.mmd2_grad_1d_joint(xi @ points.T, 40).T, xi)
    reference *= sliced.sliced_factor(2) / 64
    got = sliced.sliced_mmd2_grad(x, y, 64, generator=torch.Generator().manual_seed(7), max_block=400)
    assert torch.equal(got, reference)
    # Beyond the threshold each block draws its own directions: still an estimate of the exact gradient.
    monkeypatch.setattr(sliced, "DIRECTIONS_AT_ONCE", 0)
    blocked = sliced.sliced_mmd2_grad(x.double(), y.double(), 20_000, generator=torch.Generator().manual_seed(1),
                                      max_block=8_000)
    exact = mmd2_grad(x.double(), y.double())
    assert float((blocked - exact).norm() / exact.norm()) < 0.03


# ---------------------------------------------------------------------- 3. resume fingerprint, checksums
def _interrupt_after_first_network(monkeypatch, **fit_kwargs) -> None:
    original = ConditionalMMDFlow._train_network
    calls = {"n": 0}

    def crash_on_second(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated Ctrl-C")
        return original(self, *args)

    monkeypatch.setattr(ConditionalMMDFlow, "_train_network", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        fit(**fit_kwargs)
    monkeypatch.setattr(ConditionalMMDFlow, "_train_network", original)


def test_resume_accepts_the_same_data_under_another_thread_count(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)  # values over 8 orders of magnitude: float sums depend on the threads
    x = torch.randn(20_000, 2, generator=g) * 10.0 ** torch.randint(-4, 5, (20_000, 1), generator=g)
    y = x.sum(1, keepdim=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _interrupt_after_first_network(monkeypatch, x=x, y=y, checkpoint_dir=tmp_path)
        torch.set_num_threads(2)
        resumed = fit(x=x, y=y, checkpoint_dir=tmp_path, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert len(resumed.networks) == TINY.n_networks


def test_resume_refuses_pairs_shuffled_against_each_other(tmp_path, monkeypatch):
    x, y = pairs()
    y = (4 * y).round() / 4  # quarters: every sum and sum of squares is exact, whatever the order
    _interrupt_after_first_network(monkeypatch, x=x, y=y, checkpoint_dir=tmp_path)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    with pytest.raises(ValueError, match="training data"):  # same moments, other pairs
        fit(x=x, y=shuffled, checkpoint_dir=tmp_path, resume=True)
    assert len(fit(x=x, y=y, checkpoint_dir=tmp_path, resume=True).networks) == TINY.n_networks


def _tensor_records(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of every stored tensor record in a torch zip file."""
    records = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if "/data/" in info.filename and not info.filename.endswith(".pkl"):
                with path.open("rb") as stream:
                    stream.seek(info.header_offset + 26)
                    name_len, extra_len = (int.from_bytes(stream.read(2), "little") for _ in range(2))
                records.append((info.header_offset + 30 + name_len + extra_len, info.compress_size))
    return records


def test_bit_flips_in_tensor_records_are_reported_as_corruption(tmp_path, flow):
    flow.save(tmp_path / "flow.pt")
    good = (tmp_path / "flow.pt").read_bytes()
    records = _tensor_records(tmp_path / "flow.pt")
    assert len(records) >= 4
    for offset, size in records:
        damaged = bytearray(good)
        damaged[offset + size // 2] ^= 0x10
        (tmp_path / "flow.pt").write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match=r"flow\.pt is corrupt.*checksum"):
            ConditionalMMDFlow.load(tmp_path / "flow.pt")


def test_random_bit_flips_never_load_changed_values(tmp_path, flow):
    flow.save(tmp_path / "flow.pt")
    good = (tmp_path / "flow.pt").read_bytes()
    y = torch.zeros(2, 1)
    expected = flow.sample(y, 3, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    for position in torch.randint(0, len(good), (40,), generator=g).tolist():
        damaged = bytearray(good)
        damaged[position] ^= 1 << int(torch.randint(0, 8, (1,), generator=g))
        (tmp_path / "flow.pt").write_bytes(bytes(damaged))
        try:
            loaded = ConditionalMMDFlow.load(tmp_path / "flow.pt")
        except CheckpointError as error:
            assert str(tmp_path / "flow.pt") in str(error)
            continue
        assert torch.equal(loaded.sample(y, 3, generator=torch.Generator().manual_seed(0)), expected)


# ---------------------------------------------------------------------- 5. errors that name the file
@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_unreadable_files_are_named(tmp_path, flow, damage):
    flow.save(tmp_path / "flow.pt")
    good = (tmp_path / "flow.pt").read_bytes()
    content = {"truncated": good[: len(good) // 2], "random": os.urandom(3000), "empty": b""}[damage]
    (tmp_path / "flow.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"flow\.pt is not a readable cmmd file"):
        ConditionalMMDFlow.load(tmp_path / "flow.pt")


def test_files_of_another_kind_are_named_with_their_reader(tmp_path, flow):
    flow.save(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt holds a saved single-level flow.*not a training"):
        fit(checkpoint_dir=tmp_path, resume=True)
    tiny_pyramid().save(tmp_path / "pyramid.pt")
    with pytest.raises(CheckpointError, match=r"pyramid\.pt holds a saved PyramidFlow.*PyramidFlow\.load"):
        ConditionalMMDFlow.load(tmp_path / "pyramid.pt")


def test_a_bad_checkpoint_dir_fails_before_any_training(tmp_path, monkeypatch):
    trained = []
    original = ConditionalMMDFlow._train_network
    monkeypatch.setattr(ConditionalMMDFlow, "_train_network",
                        lambda self, *args: trained.append(1) or original(self, *args))
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ValueError, match=r"checkpoint_dir = .*a-file.* is a file, not a folder"):
        fit(checkpoint_dir=tmp_path / "a-file")
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(checkpoint_dir=tmp_path / "a-file" / "below")
    assert trained == []


def test_saved_files_respect_the_umask(tmp_path, flow):
    old = os.umask(0o027)
    try:
        flow.save(tmp_path / "flow.pt")
        fit(checkpoint_dir=tmp_path / "ckpt")
    finally:
        os.umask(old)
    assert (tmp_path / "flow.pt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "ckpt" / "checkpoint.pt").stat().st_mode & 0o777 == 0o640


def test_a_save_killed_before_its_rename_leaves_no_temporary_file_for_long(tmp_path, flow):
    flow.save(tmp_path / "flow.pt")
    child = (
        "import os, sys\n"
        "from cmmd.model import ConditionalMMDFlow\n"
        "flow = ConditionalMMDFlow.load(sys.argv[1])\n"
        "os.replace = lambda *args: os._exit(9)  # killed after writing, before the rename\n"
        "flow.save(sys.argv[1])\n"
    )
    result = subprocess.run([sys.executable, "-c", child, str(tmp_path / "flow.pt")], cwd=ROOT, timeout=120)
    assert result.returncode == 9
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]  # what a kill leaves
    assert ConditionalMMDFlow.load(tmp_path / "flow.pt").history == flow.history  # the old file is intact
    flow.save(tmp_path / "flow.pt")
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
