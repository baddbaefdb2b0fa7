"""``python -m cmmd.train``: usage errors, one process equals the chapters' fit, and 2 processes with torchrun.

The torchrun runs (gloo, CPU) train ``mnist-classcond`` in the ``smoke`` profile on the offline MNIST subset:
one uninterrupted run (module fixture), whose flow must load in this process and sample, and one stopped after
its first network and resumed, whose networks must equal the uninterrupted run's bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cmmd import train
from cmmd.experiments import get_config
from cmmd.model import ConditionalMMDFlow

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT, PROFILE = "mnist-classcond", "smoke"


def run_main(capsys, *argv: str) -> tuple[int, str]:
    status = train.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def same_networks(a, b) -> bool:
    if len(a.networks) != len(b.networks):
        return False
    return all(torch.equal(v, nb.state_dict()[k]) for na, nb in zip(a.networks, b.networks)
               for k, v in na.state_dict().items())


# ---------------------------------------------------------------------- usage errors
@pytest.mark.parametrize("argv, message", [
    (["no-such-experiment", "--profile", "smoke"], "choose one of: mnist-classcond"),
    ([EXPERIMENT, "--profile", "huge"], "choose one of: smoke, cpu, paper"),
    ([EXPERIMENT, "--profile", "smoke", "--stop-after", "0"], "--stop-after must be"),
    ([EXPERIMENT, "--profile", "smoke", "--resume"], "start the run without --resume"),
    ([EXPERIMENT, "--profile", "smoke", "--device", "cuda:7"], "device"),
])
def test_bad_requests_fail_before_any_work_and_say_what_to_do(tmp_path, capsys, argv, message):
    status, text = run_main(capsys, *argv, "--out", str(tmp_path / "run"))
    assert status == 2 and message in text
    assert not (tmp_path / "run").exists()


def test_missing_data_names_the_ways_to_get_it(tmp_path, capsys, offline_data):
    status, text = run_main(capsys, "cifar10-classcond", "--profile", "smoke", "--out", str(tmp_path / "run"))
    assert status == 2 and "never downloads" in text and "CMMD_DATA_DIR" in text


# ---------------------------------------------------------------------- one process
@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    assert train.main([EXPERIMENT, "--profile", PROFILE, "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    return out


def test_one_process_trains_the_networks_of_the_chapters_fit(one_process):
    exp = get_config(EXPERIMENT, PROFILE)
    x, y = train.training_pairs(exp, 0, torch.device("cpu"))
    chapter = exp.build_flow(init_seed=20, lr_schedule="cosine").fit(x, y, generator=torch.Generator().manual_seed(30),
                                                                    progress=False)
    trained = train.load_trained(one_process)
    assert isinstance(trained, ConditionalMMDFlow) and len(trained.networks) == exp.n_networks
    assert same_networks(trained, chapter), "one process must be bit-identical to Chapter.fit_experiment"


def test_an_existing_run_is_never_overwritten(one_process, capsys):
    before = (one_process / train.FLOW_NAME).read_bytes()
    status, text = run_main(capsys, EXPERIMENT, "--profile", PROFILE, "--out", str(one_process))
    assert status == 2 and "pass --resume" in text
    assert (one_process / train.FLOW_NAME).read_bytes() == before


def test_stopped_then_resumed_in_one_process_equals_the_uninterrupted_run(one_process, tmp_path, capsys):
    out = tmp_path / "cut"
    status, text = run_main(capsys, EXPERIMENT, "--profile", PROFILE, "--out", str(out), "--stop-after", "1",
                            "--quiet")
    assert status == 0 and "stopped" in text and not (out / train.FLOW_NAME).exists()
    status, text = run_main(capsys, EXPERIMENT, "--profile", PROFILE, "--out", str(out), "--resume", "--seed", "1")
    assert status == 2 and "started with seed 0" in text
    status, _ = run_main(capsys, EXPERIMENT, "--profile", PROFILE, "--out", str(out), "--resume", "--quiet")
    assert status == 0
    assert same_networks(train.load_trained(out), train.load_trained(one_process))


# ---------------------------------------------------------------------- two processes (torchrun, gloo)
def torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "cmmd.train", EXPERIMENT, "--profile", PROFILE, "--out", str(out), "--device", "cpu",
               "--quiet", *extra]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two") / "run"
    result = torchrun(out)
    assert "2 processes on cpu" in result.stdout
    return out


def test_a_fit_on_two_processes_loads_in_one_and_samples(two_processes):
    flow = train.load_trained(two_processes)
    exp = get_config(EXPERIMENT, PROFILE)
    assert len(flow.networks) == exp.n_networks
    samples = flow.sample(exp.operator().encode(torch.arange(3)), 4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 4, *exp.x_shape) and bool(samples.isfinite().all())
    assert '"processes": 2' in (two_processes / train.RUN_NAME).read_text()


def test_two_processes_stopped_and_resumed_equal_an_uninterrupted_two_process_run(two_processes, tmp_path):
    out = tmp_path / "cut"
    assert "stopped" in torchrun(out, "--stop-after", "1").stdout
    assert (out / train.CHECKPOINTS / "checkpoint.pt").exists() and not (out / train.FLOW_NAME).exists()
    torchrun(out, "--resume")
    assert same_networks(train.load_trained(out), train.load_trained(two_processes))


def test_a_chapter_loads_the_trained_flow_instead_of_training(one_process, tmp_path):
    """The book's path from a cluster: a chapter given ``trained_flows`` loads the run of its experiment."""
    import shutil

    from cmmd.book.kit import Chapter

    flows = tmp_path / "flows"
    shutil.copytree(one_process, flows / EXPERIMENT)
    exp = get_config(EXPERIMENT, PROFILE)
    x, y = train.training_pairs(exp, 0, torch.device("cpu"))
    chapter = Chapter(PROFILE, torch.device("cpu"), 0, trained_flows=str(flows))
    model, seconds = chapter.fit_experiment(exp, x, y, name="04-mnist", init_stream=21, stream=31)
    assert same_networks(model, train.load_trained(one_process)) and seconds > 0
    other = get_config("fashionmnist-classcond", PROFILE)
    assert train.trained_for_chapter(flows, other, PROFILE, torch.device("cpu")) is None  # the chapter trains it
    with pytest.raises(ValueError, match="in profile 'smoke'.*--profile cpu"):
        train.trained_for_chapter(flows, get_config(EXPERIMENT, "cpu"), "cpu", torch.device("cpu"))
