"""The trial tables of the reduced profiles (cmmd.book.trials)."""

from __future__ import annotations

import json

import pytest

from cmmd.book.trials import choose, load_trials, trials_markdown

RECORD = {"experiment": "mnist-inpainting", "n_fit": 3600, "n_val": 400, "trials": [
    {"candidate": "a", "why": "first", "settings": "s", "cpu_seconds": 1234,
     "history": {"after_flow": [0.5, 0.1], "after_network": [0.4, 0.03]}, "psnr_mean": 14.567, "mse_ratio": 1.2},
    {"candidate": "b", "why": "second", "settings": "s", "cpu_seconds": 99, "history": {}, "psnr_mean": 15.0,
     "extra": 0.123456},
]}


def test_the_table_has_one_row_per_trial_marks_the_chosen_and_formats_each_metric():
    text = trials_markdown(RECORD, chosen="b")
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 2  # head, rule, two trials
    assert "first 3,600 training images" in text and "next 400" in text
    assert lines[2].split(" | ")[:5] == ["| a", "first", "1,234", "3.00e-02", "14.57"]
    assert "**b** (chosen)" in lines[3] and "| — |" in lines[3]  # no history, no MSE ratio
    assert lines[0].endswith("| extra |") and lines[3].endswith("| 0.123 |")  # unknown metrics last, 3 digits


def test_a_missing_record_is_none_and_a_present_one_is_read(tmp_path):
    assert load_trials("nothing-here", tmp_path) is None
    (tmp_path / "x.json").write_text(json.dumps(RECORD))
    assert load_trials("x", tmp_path) == RECORD


def test_the_trial_script_fits_and_scores_a_candidate_on_held_out_training_images(monkeypatch):
    """A tiny candidate end to end: the class-conditional and inpainting scores are finite and in range."""
    import importlib.util
    from pathlib import Path

    import pytest

    from cmmd.data import load_mnist
    from cmmd.experiments.mnist import cpu_changes, paper_patches

    try:
        load_mnist("train", n=10, download=False)
    except FileNotFoundError:
        pytest.skip("no offline MNIST")
    path = Path(__file__).resolve().parents[1] / "scripts" / "validation_trials.py"
    spec = importlib.util.spec_from_file_location("validation_trials", path)
    trials = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trials)
    monkeypatch.setattr(trials, "N_FIT", 200)
    monkeypatch.setattr(trials, "N_VAL", 100)
    monkeypatch.setattr(trials, "JUDGE_STEPS", 20)
    for experiment in ("mnist-classcond", "mnist-inpainting"):
        candidate = trials.candidates(experiment)["patches-m0-long"]
        tiny = cpu_changes("tiny", paper_patches(experiment), 0.0, n_networks=1, flow_steps=2, train_steps=2)
        row = trials.run(experiment, "patches-m0", dict(candidate, changes=tiny))
        assert len(row["history"]["after_network"]) == 1 and "n_projections=100" in row["settings"]
        # the same fit continued to 3 networks: its first network is the 1-network fit, scored identically
        longer = trials.run(experiment, "patches-m0", dict(candidate, changes=tiny), extend=3)
        metrics = {k: v for k, v in row.items() if k not in ("cpu_seconds", "curve", "curve_history")}
        assert {k: longer[k] for k in metrics} == metrics
        assert [point["networks"] for point in longer["curve"]] == [1, 2, 3]
        assert {k: longer["curve"][0][k] for k in metrics if k in longer["curve"][0]} == {
            k: v for k, v in metrics.items() if k in longer["curve"][0]}
        assert len(longer["curve_history"]["after_network"]) == 3
        if experiment == "mnist-classcond":
            assert 0 <= row["accuracy"] <= 1 and row["fid"] > 0 and row["background_rms"] > 0
        else:
            assert 5 < row["psnr_mean"] < 40 and row["mse_ratio"] > 1 and abs(row["mse_ratio_exact"] - 32 / 17) < 1e-12


def test_the_rule_takes_the_lowest_fid_or_the_best_mean_that_is_not_collapsed():
    fid = {"trials": [{"candidate": "a", "fid": 3.0}, {"candidate": "b", "fid": 2.0}]}
    assert choose(fid) == "b"
    inpaint = {"trials": [{"candidate": "sharp", "psnr_mean": 15.0, "mse_ratio": 1.2},
                          {"candidate": "spread", "psnr_mean": 14.0, "mse_ratio": 1.7},
                          {"candidate": "wide", "psnr_mean": 13.0, "mse_ratio": 2.5}]}
    assert choose(inpaint) == "spread"  # the higher PSNR of "sharp" comes from collapse
    collapsed = {"trials": [{"candidate": "x", "psnr_mean": 15.0, "mse_ratio": 1.1},
                            {"candidate": "y", "psnr_mean": 14.0, "mse_ratio": 1.3}]}
    assert choose(collapsed) == "y"
    with pytest.raises(ValueError, match="no trial"):
        choose({"trials": []})


def test_each_cpu_profile_is_the_candidate_its_trials_chose():
    """cmmd.experiments.mnist.CPU_CHOICE names a candidate of the trial script; the `cpu` profile runs exactly its
    settings; where the trial record is in the repository, the fixed rule picks that candidate from it."""
    from cmmd.experiments import get_config
    from cmmd.experiments.mnist import CPU_CHOICE, PAPER, cpu_candidates

    for experiment, (name, _) in CPU_CHOICE.items():
        candidate = PAPER[experiment]().reduced("cpu", cpu_candidates(experiment)[name][1])
        profile = get_config(experiment, "cpu")
        assert profile.flow_config() == candidate.flow_config() and profile.n_train == candidate.n_train
        assert profile.net == candidate.net and profile.train_steps == candidate.train_steps
        record = load_trials(experiment)
        if record is not None:
            assert name in {t["candidate"] for t in record["trials"]}
            assert choose(record) == name, f"{experiment}: the trials choose {choose(record)}, the profile runs {name}"


def test_the_curve_text_says_when_each_target_was_first_met_or_what_was_reached():
    from cmmd.book.trials import curve_figure, curve_markdown, curve_text

    curve = [dict(networks=k, cpu_seconds=60 * k, fid=100.0 / k, accuracy=0.8 + 0.02 * k,
                  background_rms=0.1 - 0.01 * k, spread=0.5 + 0.01 * k) for k in (2, 4, 6, 8)]
    record = dict(trials=[dict(candidate="long", cpu_seconds=240, curve=curve,
                               history=dict(after_network=[0.1] * 4))])
    lines = curve_text(record, "long").splitlines()
    assert lines[0] == "- background RMS ≤ 0.050: first met after 6 networks, 6 CPU minutes (0.040)"
    assert lines[1] == "- judge accuracy ≥ 90.0%: first met after 6 networks, 6 CPU minutes (92.0%)"
    assert lines[2] == "- within-class spread / real ≥ 0.80: not met in 8 CPU minutes (8 networks): 0.54 → 0.58 over the last 4 minutes"
    table = curve_markdown(record, "long").splitlines()
    assert table[0].startswith("| networks | CPU minutes | FID (judge features) | judge accuracy |") and len(table) == 6
    assert table[3].startswith("| **4** | 4.0 | 25.0 | 88.0% | 0.060 |")
    fig = curve_figure(record, "long")
    assert len(fig.axes) == 4
