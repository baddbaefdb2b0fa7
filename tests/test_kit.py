"""The chapter kit (cmmd.book.kit.Chapter): a chapter's random streams, its results file and footer, its tables.

The numbers of a chapter depend on the kit only through the seeds it hands out, so the seed formula
``1000 * seed + stream`` is pinned here; the fits themselves are tested in test_chapter.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from cmmd.book.kit import Chapter, fit_summary, history_table, ledger_text
from cmmd.book.results import validate_ledger
from cmmd.model import FitHistory

SETTINGS = {"smoke": {"n": 1}, "cpu": {"n": 2}, "paper": {"n": 3}}


def started(capsys, seed: int = 3, **kwargs) -> Chapter:
    """A chapter started in the smoke profile on the CPU, its banner swallowed."""
    chapter = Chapter.start("smoke", "cpu", seed, settings=SETTINGS, **kwargs)
    capsys.readouterr()
    return chapter


def test_start_checks_the_profile_and_shows_the_banner(capsys):
    chapter = Chapter.start("cpu", "cpu", 0, settings=SETTINGS)
    assert chapter.settings == {"n": 2} and chapter.device == torch.device("cpu") and chapter.checkpoint_dir == ""
    assert "How this page was produced" in capsys.readouterr().out  # no IPython kernel: printed
    with pytest.raises(ValueError, match="unknown profile"):
        Chapter.start("fast", "cpu", 0, settings=SETTINGS)


def test_each_stream_is_seeded_with_1000_seed_plus_stream(capsys):
    chapter = started(capsys, seed=3)
    assert chapter.stream_seed(7) == 3007
    expected = torch.rand(5, generator=torch.Generator().manual_seed(1000 * 3 + 7))
    assert torch.equal(torch.rand(5, generator=chapter.generator(7)), expected)
    # a fresh generator per call: the same stream gives the same numbers again
    assert torch.equal(torch.rand(5, generator=chapter.generator(7)), expected)
    assert not torch.equal(torch.rand(5, generator=chapter.generator(8)), expected)


class _Model:
    """Stands in for a learned flow: records what fit received."""

    def fit(self, x, y, *, generator, checkpoint_dir, resume, progress):
        self.first_draw, self.checkpoint_dir = torch.rand(3, generator=generator), checkpoint_dir
        return self


class _Experiment:
    """Stands in for an experiment config: records the seed and the changes of build_flow."""

    def build_flow(self, *, init_seed, device, **changes):
        self.init_seed, self.device, self.changes = init_seed, device, changes
        return _Model()


def test_fit_experiment_seeds_the_networks_and_the_fit_from_their_streams(capsys):
    chapter, experiment = started(capsys, seed=2), _Experiment()
    model, seconds = chapter.fit_experiment(experiment, torch.zeros(2), torch.zeros(2), name="fit",
                                            init_stream=20, stream=30, lr_schedule="cosine")
    assert experiment.init_seed == 2020 and experiment.changes == {"lr_schedule": "cosine"}
    assert torch.equal(model.first_draw, torch.rand(3, generator=torch.Generator().manual_seed(2030)))
    assert model.checkpoint_dir is None and seconds >= 0  # no checkpoint_dir: no folder


def _rows(chapter: Chapter) -> list[dict]:
    return [chapter.ledger_row("toy-gmm", "energy-ratio", torch.tensor(1.5), higher_is_better=False,
                               baseline=("prior", 30.0)),
            chapter.ledger_row("toy-gmm", "slope", -0.49, paper=-0.5, higher_is_better=True)]


def test_finish_writes_a_valid_results_file_and_shows_the_rows_and_the_run_time(capsys, tmp_path):
    chapter = started(capsys)
    path = tmp_path / "results.json"
    chapter.finish(str(path), ledger=_rows(chapter), metrics={"curve": torch.arange(3.0)})
    data = json.loads(path.read_text())
    rows = validate_ledger(data["ledger"], profile="smoke")
    assert rows[0]["baseline"] == {"name": "prior", "value": 30.0, "difference_ci95": None} and rows[0]["ours"] == 1.5
    assert rows == data["ledger"] and [row["status"] for row in rows] == ["no interval: not compared", "—"]
    assert data["metrics"] == {"curve": [0.0, 1.0, 2.0]}
    out = capsys.readouterr().out
    assert "energy-ratio ↓" in out and "prior 30" in out and "no interval: not compared" in out
    assert "beats" not in out and "agrees" not in out  # no verdict without an interval
    assert "Run time\n  Total: " in out  # the footer, as the ledger pages read it back


def test_save_results_standalone_checks_the_rows_and_warns(capsys):
    chapter = started(capsys)
    with pytest.warns(UserWarning, match="results_path is empty"):
        chapter.save_results("", ledger=_rows(chapter), metrics={})
    assert "Run time" not in capsys.readouterr().out  # the footer is a step of its own
    with pytest.raises(ValueError, match="not an id"):
        chapter.save_results("", ledger=[chapter.ledger_row("Toy", "x", 1.0, higher_is_better=True)], metrics={})


def test_ledger_text_aligns_the_columns(capsys):
    lines = ledger_text(_rows(started(capsys))).splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["experiment", "metric", "ours [95% CI]", "paper", "compared with",
                                            "measured", "status"]
    assert lines[1].index("1.5 ") + 3 == lines[2].index("-0.49") + 5  # numbers right-aligned in one column
    assert re.split(r"\s{2,}", lines[2])[-3:] == ["—", "not tuned, smoke", "—"]  # no baseline: no verdict


@dataclass
class _Interval:
    """Stands in for cmmd.statistics.Interval: an estimate with its 95% interval over n items."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = 0.95


def test_ledger_row_takes_the_intervals_of_cmmd_statistics_and_the_status_follows_them(capsys):
    chapter = started(capsys)
    row = chapter.ledger_row("materials-superres", "psnr-mean", 24.47, higher_is_better=True,
                             baseline=("bicubic", 24.80), ours_ci95=_Interval(24.47, 24.1, 24.8, 40),
                             difference_ci95=_Interval(-0.33, -0.6, -0.1, 40), tuned_on="validation")
    assert row["n"] == 40 and row["ours_ci95"] == [24.1, 24.8] and "status" not in row
    assert row["baseline"] == {"name": "bicubic", "value": 24.80, "difference_ci95": [-0.6, -0.1]}
    level = chapter.ledger_row("materials-superres", "ssim-mean", 0.67, higher_is_better=True, n=40,
                               baseline=("bicubic", 0.70), ours_ci95=(0.6, 0.7), difference_ci95=(-0.07, 0.01))
    exponent = chapter.ledger_row("error-bound", "fitted-exponent", 0.6, higher_is_better=None,
                                  ours_ci95=_Interval(0.6, 0.55, 0.7, 12),
                                  expected=("the bound's exponents", 0.0625, 0.5))
    assert exponent["expected"] == {"name": "the bound's exponents", "low": 0.0625, "high": 0.5}
    rows = validate_ledger([row, level, exponent], profile="smoke")
    assert [r["status"] for r in rows] == ["behind bicubic", "level with bicubic", "contradicts the bound's exponents"]
    assert [r["tuned_on"] for r in rows] == ["validation", "none", "none"]  # "none": settings fixed in advance
    text = ledger_text([row, level, exponent])
    assert "24.47 [24.1, 24.8]" in text and "bicubic 24.8; Δ -0.33 [-0.6, -0.1]" in text
    assert "n = 40, tuned on validation, smoke" in text and "n = 40, not tuned, smoke" in text
    assert "fitted-exponent  " in text  # no arrow: not a score


def test_ledger_row_refuses_what_cannot_be_a_paired_comparison(capsys):
    chapter = started(capsys)
    with pytest.raises(ValueError, match=r"toy/x: the intervals and n count different items \[40, 50\]"):
        chapter.ledger_row("toy", "x", 1.0, higher_is_better=True, baseline=("b", 0.5),
                           ours_ci95=_Interval(1.0, 0.9, 1.1, 40), difference_ci95=_Interval(0.5, 0.4, 0.6, 50))
    with pytest.raises(ValueError, match=r"toy/x: the intervals and n count different items \[40, 41\]"):
        chapter.ledger_row("toy", "x", 1.0, higher_is_better=True, n=41, ours_ci95=_Interval(1.0, 0.9, 1.1, 40))
    with pytest.raises(ValueError, match="toy/x: difference_ci95 is an interval of ours - baseline: pass baseline"):
        chapter.ledger_row("toy", "x", 1.0, higher_is_better=True, n=5, difference_ci95=(0.1, 0.2))
    with pytest.raises(ValueError, match=r"toy/x ours_ci95 = \[1.1, 0.9\] has low > high"):
        chapter.ledger_row("toy", "x", 1.0, higher_is_better=True, n=5, ours_ci95=(1.1, 0.9))
    with pytest.raises(ValueError, match=r"toy/x: expected must be \(name, low, high\)"):
        chapter.ledger_row("toy", "x", 1.0, higher_is_better=None, expected=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"toy/x ours_ci95 is a 90% interval; the ledger holds 95% intervals"):
        chapter.ledger_row("toy", "x", 1.0, higher_is_better=True, ours_ci95=_Interval(1.0, 0.9, 1.1, 40, level=0.9))
    test_tuned = chapter.ledger_row("toy", "x", 1.0, higher_is_better=True, tuned_on="test")
    with pytest.raises(ValueError, match="settings must be chosen on validation data"):
        validate_ledger([test_tuned])  # smoke runs the cpu code path: refused there too


def test_history_table_has_one_row_per_network():
    history = FitHistory(flow_steps=[16, 1024], mmd2_after_flow=[0.5, 0.01], mmd2_after_network=[0.6, 0.02],
                         train_loss=[3.0, 0.25])
    lines = history_table(history).splitlines()
    assert lines[0] == "| network | flow steps T_l | MMD² after flow | MMD² after network | training loss |"
    assert lines[1] == "|---:|---:|---:|---:|---:|"
    assert lines[3] == "| 2 | 1,024 | 1.000e-02 | 2.000e-02 | 2.500e-01 |"
    assert len(lines) == 4


def test_fit_summary_counts_networks_and_time():
    class Fitted:
        networks = [object(), object()]
        history = FitHistory(flow_steps=[1, 2], mmd2_after_flow=[1.0, 0.5], mmd2_after_network=[1.0, 0.5],
                             train_loss=[1.0, 0.5])

    text = fit_summary("MNIST", Fitted(), 75.0)
    assert text.startswith("**MNIST**: 2 networks trained in 1 min 15 s.\n\n| network |")


def test_a_pyramid_shows_the_level_of_each_network():
    from cmmd.experiments import get_config

    pyramid = get_config("cifar10-classcond", "smoke").build_flow(init_seed=0)
    for k, level in enumerate(pyramid.levels):  # as if each level had fitted one network
        level.history = FitHistory(flow_steps=[4 * (k + 1)], mmd2_after_flow=[0.1], mmd2_after_network=[0.2],
                                   train_loss=[0.3])
        level.networks = [object()]
    text = fit_summary("CIFAR-10", pyramid, 12.0)
    assert text.startswith(f"**CIFAR-10**: {len(pyramid.levels)} networks over {len(pyramid.levels)} resolutions")
    assert "| network | level | flow steps T_l |" in text
    assert text.splitlines()[-3].startswith(f"| {len(pyramid.levels)} | {len(pyramid.levels) - 1} | ")


def test_the_descent_text_names_segments_that_raised_the_mmd_and_networks_where_it_rose():
    from cmmd.book.kit import descent_text

    falling = FitHistory(flow_steps=[4] * 3, mmd2_after_flow=[0.5, 0.3, 0.1], mmd2_after_network=[0.6, 0.4, 0.2],
                         train_loss=[0.0] * 3)
    assert descent_text(falling) == ("Each of the 2 flow segments after the first lowered the MMD² it started from; "
                                     "the MMD² after the networks fell at every network.")
    # segment 3 starts from 0.4 (after network 2) and ends at 0.45; network 3 leaves 0.5 > 0.4
    oscillating = FitHistory(flow_steps=[4] * 3, mmd2_after_flow=[0.5, 0.3, 0.45], mmd2_after_network=[0.6, 0.4, 0.5],
                             train_loss=[0.0] * 3)
    assert descent_text(oscillating) == ("1 of 2 flow segments after the first lowered the MMD² they started from "
                                         "(segment 3 raised it); the MMD² after the networks rose at network 3.")


def test_a_chapter_imports_none_of_the_runner_tools():
    """A chapter imports the kit in Colab, where jupytext, papermill and nbformat are not installed."""
    code = ("import sys, cmmd.book.kit, cmmd.book; "
            "print(sorted(m for m in ('jupytext', 'papermill', 'nbformat') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fit_regressor_trains_the_flows_budget_and_reads_its_weights_back(capsys, tmp_path):
    """Default steps = L x train_steps of the flow; a second run reads the saved weights (same predictions) and
    a different training set is not read back but trained afresh."""
    from cmmd.experiments import get_config
    from cmmd.regression import adam_budget

    chapter = Chapter.start("smoke", "cpu", 0, checkpoint_dir=str(tmp_path))
    exp = get_config("mnist-inpainting", "smoke").with_changes(train_steps=3)
    x = torch.rand(12, *exp.x_shape, generator=torch.Generator().manual_seed(1))
    y = exp.operator()(x)
    first, _ = chapter.fit_regressor(exp, x, y, name="r", init_stream=1, stream=2)
    assert first.steps == adam_budget(exp.flow_config()) == exp.n_networks * 3
    assert (tmp_path / "r" / "regressor.pt").is_file()
    again, _ = chapter.fit_regressor(exp, x, y, name="r", init_stream=5, stream=6)  # read back: streams unused
    assert torch.equal(again.predict(y), first.predict(y))
    other, _ = chapter.fit_regressor(exp, x.flip(0), y.flip(0), name="r", init_stream=5, stream=6)
    assert not torch.equal(other.predict(y), first.predict(y))
