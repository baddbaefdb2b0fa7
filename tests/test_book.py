"""The book pipeline: ledger validation, the notebook contract, staleness of the committed
notebooks, configuration consistency, running a notebook, and the offline ``-W`` book build."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cmmd import book, runtime
from cmmd.book.pages import format_interval

ROOT = Path(__file__).resolve().parents[1]
NAMES = book.notebook_names(ROOT / "notebooks")


def _row(**changes):
    row = dict(
        experiment="mnist-inpainting", metric="psnr-mean", ours=21.5, paper=None,
        baseline={"name": "SRFlow", "value": 20.0}, higher_is_better=True, profile="cpu",
    )
    row.update(changes)
    return row


# --------------------------------------------------------------------------- ledger and results


def _v2(ours: float = 21.5, base: float = 20.0, diff=(0.5, 2.5), *, higher: bool | None = True, **changes):
    """A v2 row: ours, the baseline and the interval of ours - baseline over n = 50 items."""
    baseline = None if base is None else {"name": "SRFlow", "value": base, "difference_ci95": diff}
    fields = dict(n=50, ours_ci95=[ours - 1, ours + 1], tuned_on="validation")
    return _row(ours=ours, baseline=baseline, higher_is_better=higher, **{**fields, **changes})


def _esc(message: str) -> str:
    return re.escape(message)


def test_validate_ledger_accepts_valid_rows_and_converts_scalars():
    rows = book.validate_ledger([_row(ours=torch.tensor(2.0)), _row(metric="ssim-mean", paper=0.8)])
    assert rows[0]["ours"] == 2.0 and isinstance(rows[0]["ours"], float)
    assert rows[1]["paper"] == 0.8


def test_v1_rows_stay_valid_and_say_honestly_that_they_compare_nothing():
    """Rows as written before intervals (the committed chapters): valid, every v2 key None, no verdict."""
    with_base, without = book.validate_ledger([_row(), _row(metric="ssim-mean", baseline=None)])
    assert with_base["status"] == "no interval: not compared"
    assert without["status"] == "—"
    assert with_base["baseline"] == {"name": "SRFlow", "value": 20.0, "difference_ci95": None}
    assert {k: with_base[k] for k in ("n", "ours_ci95", "tuned_on", "expected")} == dict.fromkeys(
        ("n", "ours_ci95", "tuned_on", "expected"))
    # an interval of ours alone compares with nothing either
    assert book.ledger_status(_row(baseline=None, n=9, ours_ci95=[21.0, 22.0])) == "—"
    # a baseline without the difference's interval is not compared, whatever ours_ci95 says
    assert book.ledger_status(_row(n=9, ours_ci95=[21.0, 22.0])) == "no interval: not compared"


def test_committed_ledger_page_is_rendered_from_the_committed_results():
    """book/generated/ledger.md is what render_ledger makes of the committed records, all of them valid."""
    generated = ROOT / "book" / "generated"
    records = book.read_records(generated)
    for record in records:
        book.validate_ledger(record["ledger"], profile=record["profile"])
    assert (generated / "ledger.md").read_text(encoding="utf-8") == book.render_ledger(records), (
        "book/generated/ledger.md is stale: python -c 'from cmmd.book import write_ledger_pages; "
        "write_ledger_pages()'"
    )


@pytest.mark.parametrize(
    "higher, diff, status",
    [
        (True, (0.5, 2.5), "ahead of SRFlow"),
        (True, (-2.5, -0.5), "behind SRFlow"),
        (True, (-0.5, 2.5), "level with SRFlow"),
        (True, (0.0, 2.0), "level with SRFlow"),  # an end at 0 does not exclude 0
        (True, (-2.0, 0.0), "level with SRFlow"),
        (False, (0.5, 2.5), "behind SRFlow"),  # ours higher, lower is better
        (False, (-2.5, -0.5), "ahead of SRFlow"),
        (False, (-2.0, 0.0), "level with SRFlow"),
        (False, (-0.5, 2.5), "level with SRFlow"),
    ],
)
def test_status_against_a_baseline_follows_the_interval_of_the_difference(higher, diff, status):
    ours = 20.0 + (diff[0] + diff[1]) / 2  # ours - baseline lies inside the interval
    row = _v2(ours, 20.0, list(diff), higher=higher)
    assert book.ledger_status(row) == status
    assert book.validate_ledger([{**row, "status": status}])[0]["status"] == status  # a typed status that agrees


@pytest.mark.parametrize(
    "ours_ci95, status",
    [
        ((0.2, 0.4), "consistent with the bound's exponents"),
        ((0.5, 0.7), "consistent with the bound's exponents"),  # touching the range meets it
        ((0.0, 0.0625), "consistent with the bound's exponents"),
        ((0.55, 0.8), "contradicts the bound's exponents"),
        ((0.0, 0.06), "contradicts the bound's exponents"),
    ],
)
def test_status_against_an_expected_range_follows_the_interval_of_ours(ours_ci95, status):
    expected = {"name": "the bound's exponents", "low": 0.0625, "high": 0.5}
    row = _row(metric="fitted-exponent", ours=sum(ours_ci95) / 2, baseline=None, higher_is_better=None,
               n=12, ours_ci95=list(ours_ci95), expected=expected)
    assert book.ledger_status(row) == status
    assert book.ledger_status({**row, "ours_ci95": None, "n": None}) == "no interval: not compared"


def test_status_joins_a_baseline_and_an_expected_range():
    row = _v2(expected={"name": "the target band", "low": 25.0, "high": 30.0})
    assert book.ledger_status(row) == "ahead of SRFlow; contradicts the target band"
    no_intervals = _row(expected={"name": "the target band", "low": 25.0, "high": 30.0})
    assert book.ledger_status(no_intervals) == "no interval: not compared"


@pytest.mark.parametrize(
    "row, status",
    [
        (_v2(status="level with SRFlow"), "ahead of SRFlow"),
        (_v2(diff=[-0.5, 2.5], status="ahead of SRFlow"), "level with SRFlow"),
        (_row(status="beats SRFlow"), "no interval: not compared"),  # v1 rows cannot claim a win either
        (_row(baseline=None, status="measured"), "—"),
    ],
)
def test_a_typed_status_that_disagrees_with_the_derived_one_is_refused(row, status):
    with pytest.raises(ValueError, match=_esc(f"(mnist-inpainting/psnr-mean)['status'] = {row['status']!r}, "
                                              f"but the intervals say {status!r}")):
        book.validate_ledger([row])


def test_tuning_on_the_test_data_is_refused_in_the_reduced_profiles():
    for profile in ("cpu", "smoke"):
        with pytest.raises(ValueError, match=r"\['tuned_on'\] = 'test'.*must be chosen on validation data"):
            book.validate_ledger([_v2(tuned_on="test", profile=profile)])
    assert book.validate_ledger([_v2(tuned_on="test", profile="paper")])[0]["tuned_on"] == "test"
    for tuned_on in ("validation", "none"):
        assert book.validate_ledger([_v2(tuned_on=tuned_on)])[0]["tuned_on"] == tuned_on


def test_intervals_may_be_objects_with_low_and_high_and_are_stored_as_lists():
    class Interval:
        def __init__(self, low, high):
            self.low, self.high = torch.tensor(low), high

    row = book.validate_ledger([_v2(ours_ci95=Interval(21.0, 22.0), diff=Interval(0.5, 2.5))])[0]
    assert row["ours_ci95"] == [21.0, 22.0] and row["baseline"]["difference_ci95"] == [0.5, 2.5]
    assert json.loads(json.dumps(row)) == row
    assert book.validate_ledger([row]) == [row]  # a stored row (with its status) validates to itself


@pytest.mark.parametrize(
    "row, message",
    [
        (_row(experiment="MNIST_inpainting"), "not an id"),
        (_row(metric="psnr--mean"), "not an id"),
        (_row(ours="21"), "must be a number"),
        (_row(ours=float("nan")), "finite"),
        (_row(ours=True), "must be a number"),
        (_row(paper="n/a"), "a number or None"),
        (_row(baseline={"name": "SRFlow"}), "baseline"),
        (_row(baseline={"name": "SRFlow", "value": 1.0, "ci": [0, 1]}), "baseline"),
        (_row(baseline={"name": "", "value": 1.0}), "non-empty"),
        (_row(higher_is_better=1), "True or False, or None"),
        (_row(profile="gpu"), "not one of"),
        ({k: v for k, v in _row().items() if k != "paper"}, "missing keys ['paper']"),
        (_row(note="x"), "unknown keys ['note']"),
        # v2 fields: each error names the row and the field
        (_v2(ours_ci95=[21.0]), "(mnist-inpainting/psnr-mean)['ours_ci95'] must be [low, high]"),
        (_v2(ours_ci95=21.0), "['ours_ci95'] must be [low, high]"),
        (_v2(ours_ci95=[22.0, 21.0]), "['ours_ci95'] = [22.0, 21.0] has low > high"),
        (_v2(ours_ci95=[21.0, float("inf")]), "['ours_ci95'][1] is inf"),
        (_v2(ours_ci95=["21", 22.0]), "['ours_ci95'][0] must be a number"),
        (_v2(ours_ci95=[21.6, 23.0]), "['ours_ci95'] = [21.6, 23.0] does not contain ours = 21.5"),
        (_v2(diff=[-2.5, -0.5]), "['baseline']['difference_ci95'] = [-2.5, -0.5] does not contain ours - baseline"),
        (_v2(diff=[0.5, None]), "['baseline']['difference_ci95'][1] must be a number"),
        (_v2(diff=[2.5, 0.5]), "['baseline']['difference_ci95'] = [2.5, 0.5] has low > high"),
        ({**_v2(), "n": None}, "(mnist-inpainting/psnr-mean)['n'] is missing"),
        (_v2(n=0), "['n'] must be a positive int"),
        (_v2(n=50.0), "['n'] must be a positive int"),
        (_v2(n=True), "['n'] must be a positive int"),
        (_v2(tuned_on="train"), "['tuned_on'] = 'train' is not one of"),
        (_v2(expected={"name": "band", "low": 1.0}), "['expected'] must be None or"),
        (_v2(expected={"name": " ", "low": 1.0, "high": 2.0}), "['expected']['name'] must be a non-empty"),
        (_v2(expected={"name": "band", "low": 2.0, "high": 1.0}),
         "['expected'][low, high] = [2.0, 1.0] has low > high"),
        (_v2(higher=None), "(mnist-inpainting/psnr-mean)['baseline'] needs a direction"),
        (_v2(status=None), "['status'] = None"),
    ],
)
def test_validate_ledger_rejects_bad_rows(row, message):
    with pytest.raises(ValueError, match=_esc(message)):
        book.validate_ledger([row])


def test_validate_ledger_rejects_duplicates_and_foreign_profiles():
    with pytest.raises(ValueError, match="twice"):
        book.validate_ledger([_row(), _row()])
    with pytest.raises(ValueError, match="ran with profile 'smoke'"):
        book.validate_ledger([_row()], profile="smoke")
    with pytest.raises(ValueError, match="list of dicts"):
        book.validate_ledger(_row())


def test_write_results_writes_json_and_warns_when_standalone(tmp_path):
    path = tmp_path / "r.json"
    book.write_results(path, ledger=[_row(), _v2(metric="ssim-mean")],
                       metrics={"a": torch.arange(3.0), "b": {"c": 1}})
    data = json.loads(path.read_text())
    assert data["metrics"] == {"a": [0.0, 1.0, 2.0], "b": {"c": 1}}
    assert data["ledger"][0]["experiment"] == "mnist-inpainting"
    assert [row["status"] for row in data["ledger"]] == ["no interval: not compared", "ahead of SRFlow"]
    assert book.validate_ledger(data["ledger"]) == data["ledger"]  # the runner validates the file again
    with pytest.warns(UserWarning, match="results_path is empty"):
        book.write_results("", ledger=[_row()], metrics={})
    with pytest.raises(ValueError, match="not an id"):  # checked even when nothing is written
        book.write_results("", ledger=[_row(metric="PSNR")], metrics={})
    with pytest.raises(ValueError, match="finite"):
        book.write_results(path, ledger=[], metrics={"x": float("inf")})


def test_format_interval_rounds_to_the_width_and_never_hides_the_sign():
    assert format_interval([24.12, 24.81], 24.4653) == "24.47 [24.1, 24.8]"
    assert format_interval([-0.61, -0.08], -0.3397) == "-0.34 [-0.6, -0.1]"
    assert format_interval([-0.6, -0.001]) == "[-0.6, -0.001]"  # not "-0.0"
    assert format_interval([0.9912, 0.9931], 0.9921) == "0.99210 [0.9912, 0.9931]"  # step <= width / 2
    assert format_interval([560.2, 571.4], 566.88) == "566.9 [560, 571]"
    assert format_interval([2.0, 2.0], 2.0) == "2 [2, 2]"
    assert format_interval([1.0e5, 3.0e5]) == "[1.00e+05, 3.00e+05]"


RECORD = {
    "notebook": "05_inpainting", "profile": "cpu", "hardware": "CPU: x | y", "wall_time_s": 75.0,
    "executed_at": "2025-01-02T03:04:05+00:00", "source": "notebooks/05_inpainting.py",
    "source_hash": "ab" * 32, "ledger": [_row()],
}


def test_ledger_and_runs_tables():
    table = book.render_ledger([RECORD])
    assert table.splitlines()[0] == (
        "| Experiment (chapter): metric | Ours [95% CI] | Compared with | Measured | Status |")
    assert ("| {doc}`mnist-inpainting (5) </generated/05_inpainting>`: psnr-mean ↑ | 21.5 | SRFlow 20 | `cpu` "
            "| no interval: not compared |") in table
    assert table.count("\n") == 3
    runs = book.render_runs([RECORD])
    assert "profile `cpu`" in runs and "1 min 15 s" in runs and "CPU: x \\| y" in runs
    assert "{doc}`5 </generated/05_inpainting>`" in runs
    assert "Compared with" not in book.render_ledger([{**RECORD, "ledger": [_row(baseline=None)]}])
    assert "make book" in book.render_ledger([]) and "make book" in book.render_runs([])


def test_the_ledger_shows_a_v2_row_with_its_intervals_beside_a_v1_row():
    v2 = _v2(24.4653, 24.805, [-0.61, -0.08], metric="ssim-mean", paper=25.1, ours_ci95=[24.12, 24.81], n=200)
    exponent = _row(experiment="error-bound", metric="fitted-exponent", ours=0.3, baseline=None,
                    higher_is_better=None, n=12, ours_ci95=[0.2, 0.4], tuned_on="none",
                    expected={"name": "the bound's exponents", "low": 0.0625, "high": 0.5})
    lines = book.render_ledger([{**RECORD, "ledger": [_row(), v2, exponent]}]).splitlines()
    assert lines[0] == ("| Experiment (chapter): metric | Ours [95% CI] | Paper | Compared with | Measured "
                        "| Status |")
    assert lines[2].endswith("psnr-mean ↑ | 21.5 | — | SRFlow 20 | `cpu` | no interval: not compared |")
    assert lines[3].endswith("ssim-mean ↑ | 24.47 [24.1, 24.8] | 25.1 | SRFlow 24.8; Δ -0.34 [-0.6, -0.1] "
                             "| n = 200, tuned on validation, `cpu` | behind SRFlow |")
    assert lines[4].endswith("`: fitted-exponent | 0.30 [0.2, 0.4] | — | the bound's exponents [0.0625, 0.5] "
                             "| n = 12, not tuned, `cpu` | consistent with the bound's exponents |")
    bad = {**RECORD, "notebook": "06_superresolution", "ledger": [_row(status="beats SRFlow")]}
    with pytest.warns(UserWarning, match=r"06_superresolution\.json is left out.*\['status'\].*--force 06_super"):
        kept = book.render_ledger([RECORD, bad])
    assert kept == book.render_ledger([RECORD])


# --------------------------------------------------------------------------- runtime


def test_runtime_device_and_banner(capsys):
    assert runtime.check_profile("cpu") == "cpu"
    assert runtime.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu0", 3):
        with pytest.raises(ValueError, match="device"):
            runtime.resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            runtime.resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown profile"):
        runtime.banner("fast", "cpu")
    assert runtime.hardware_summary("cpu").startswith("CPU: ")
    runtime.banner("cpu", "cpu")  # no IPython kernel here: plain text
    out = capsys.readouterr().out
    assert "Profile: `cpu`" in out and "torch " + torch.__version__ in out
    assert runtime.format_duration(75.4) == "1 min 15 s" and runtime.format_duration(3.21) == "3.2 s"


# --------------------------------------------------------------------------- repository consistency


def test_config_points_to_the_repository_and_colab():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == book.REPO_URL
    assert config["repository"]["branch"] == book.REPO_BRANCH
    assert config["repository"]["path_to_book"] == "book"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["execute"]["execute_notebooks"] == "cache"
    assert "generated/*" in config["execute"]["exclude_patterns"]
    assert f"git+{book.REPO_URL}@{book.REPO_BRANCH}" in book.colab_cell_source()
    assert book.colab_url("01_sliced_mmd").endswith("/blob/main/book/generated/01_sliced_mmd.ipynb")


def _toc_files(entry) -> list[str]:
    files = [entry["file"]] if "file" in entry else []
    for key in ("parts", "chapters", "sections"):
        for child in entry.get(key, []):
            files += _toc_files(child)
    return files


def test_toc_lists_exactly_the_notebooks():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    chapters = sorted(f.removeprefix("generated/") for f in _toc_files(toc) if f.startswith("generated/"))
    assert chapters == NAMES, "book/_toc.yml must list generated/NAME for every notebooks/NAME.py"
    for f in _toc_files(toc):
        if not f.startswith("generated/"):
            assert (ROOT / "book" / f"{f}.md").exists(), f


@pytest.mark.parametrize("name", NAMES)
def test_notebook_follows_the_contract(name):
    nb = book.load_notebook(ROOT / "notebooks" / f"{name}.py")  # raises NotebookError otherwise
    text = "\n".join(c.source for c in nb.cells)
    # the kit opens the chapter (banner, clock), records its results and shows the run time (footer)
    assert "Chapter.start(profile, device, seed" in text
    assert re.search(r"chapter\.(finish|save_results)\(results_path", text)
    assert "chapter.finish(" in text or "chapter.footer()" in text
    assert "PROFILES" in text and all(f'"{p}"' in text for p in runtime.PROFILES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_current(name):
    """The executed notebook in book/generated/ belongs to the current source and the cpu profile."""
    reasons = book.stale_reasons(
        name, profile=book.DEFAULT_PROFILE,
        notebooks_dir=ROOT / "notebooks", generated_dir=ROOT / "book" / "generated",
    )
    assert not reasons, (
        "; ".join(reasons) + f". Run `make book` or `python -m cmmd.book {name}` and commit "
        f"book/generated/{name}.ipynb and .json"
    )


# --------------------------------------------------------------------------- the pipeline itself


TRIVIAL = """# %% tags=["remove-cell"]
{colab}

# %% tags=["parameters", "remove-cell"]
profile = "cpu"
device = "auto"
seed = 0
results_path = ""

# %% [markdown]
# # A trivial chapter

# %%
from cmmd.book import write_results
from cmmd.runtime import banner
banner(profile, device)
value = 1 + seed  # BODY

# %%
write_results(results_path, ledger=[dict(experiment="toy", metric="value", ours=value, paper=None,
              baseline=None, higher_is_better=True, profile=profile)], metrics={{"seed": seed}})
"""


@pytest.mark.slow
def test_run_notebook_writes_skips_and_reports_failures(tmp_path):
    src, out = tmp_path / "notebooks", tmp_path / "generated"
    src.mkdir()
    (src / "01_toy.py").write_text(TRIVIAL.format(colab=book.colab_cell_source()))
    kw = dict(notebooks_dir=src, generated_dir=out, log=lambda _: None)

    first = book.run_notebook("01_toy", profile="smoke", seed=2, **kw)
    assert first.status == "ran"
    record = json.loads((out / "01_toy.json").read_text())
    assert record["profile"] == "smoke" and record["seed"] == 2 and record["metrics"] == {"seed": 2}
    assert record["ledger"][0]["ours"] == 3.0 and record["source_hash"] == book.source_hash(src / "01_toy.py")
    executed = json.loads((out / "01_toy.ipynb").read_text())
    assert executed["metadata"]["cmmd"]["parameters"] == {"profile": "smoke", "device": "auto", "seed": 2}
    assert "/tmp" not in json.dumps(executed["metadata"]["papermill"]["parameters"])
    tags = [c["metadata"].get("tags", []) for c in executed["cells"]]
    assert not any("injected-parameters" in t for t in tags)  # so that edits in Colab take effect
    params_cell = next(c for c, t in zip(executed["cells"], tags) if "parameters" in t)
    assert "".join(params_cell["source"]) == 'profile = "smoke"\ndevice = "auto"\nseed = 2\nresults_path = ""'

    assert book.run_notebook("01_toy", profile="smoke", seed=2, **kw).status == "skipped"

    # Prose edited: --refresh-text takes the new markdown and captions, keeps the outputs, and the copy is current.
    source_text = TRIVIAL.format(colab=book.colab_cell_source())
    captioned = '# %% mystnb={"figure": {"caption": "A new caption"}}\nfrom cmmd.book import write_results'
    assert source_text.count("# %%\nfrom cmmd.book import write_results") == 1
    edited = source_text.replace("# # A trivial chapter", "# # A trivial chapter, retitled").replace(
        "# %%\nfrom cmmd.book import write_results", captioned)
    (src / "01_toy.py").write_text(edited)
    assert book.stale_reasons("01_toy", profile="smoke", notebooks_dir=src, generated_dir=out)
    book.refresh_text("01_toy", **kw)
    assert book.stale_reasons("01_toy", profile="smoke", notebooks_dir=src, generated_dir=out) == []
    refreshed = json.loads((out / "01_toy.ipynb").read_text())
    assert "retitled" in json.dumps(refreshed["cells"]) and refreshed["metadata"]["cmmd"]["text_refreshed_at"]
    assert [c["metadata"]["mystnb"] for c in refreshed["cells"] if "mystnb" in c["metadata"]] == [
        {"figure": {"caption": "A new caption"}}]
    assert [c.get("outputs") for c in refreshed["cells"]] == [c.get("outputs") for c in executed["cells"]]
    refreshed_record = json.loads((out / "01_toy.json").read_text())
    assert refreshed_record["ledger"] == record["ledger"]
    stamp = refreshed_record["text_refreshed_at"][:10]
    assert f"{refreshed_record['executed_at'][:10]}, text {stamp}" in book.render_runs([refreshed_record])
    # Code edited: refused, nothing written.
    (src / "01_toy.py").write_text(source_text.replace("1 + seed", "2 + seed"))
    unchanged = (out / "01_toy.ipynb").read_text()
    with pytest.raises(book.NotebookError, match=r"code cell 3 differs.*--force"):
        book.refresh_text("01_toy", **kw)
    assert (out / "01_toy.ipynb").read_text() == unchanged
    (src / "01_toy.py").write_text(edited)
    assert book.stale_reasons("01_toy", profile="cpu", notebooks_dir=src, generated_dir=out) == [
        "01_toy.ipynb was produced by profile 'smoke', not 'cpu'"
    ]

    # A failing cell: clear error, partial notebook kept, the good copy untouched.
    before = (out / "01_toy.ipynb").read_text()
    failing = TRIVIAL.format(colab=book.colab_cell_source()).replace("# BODY", "\nraise RuntimeError('boom')")
    (src / "01_toy.py").write_text(failing)
    line = failing.splitlines().index("from cmmd.book import write_results") + 1
    assert "executed from another version" in " ".join(
        book.stale_reasons("01_toy", profile="smoke", notebooks_dir=src, generated_dir=out)
    )
    # Cell 3 of the source (papermill's injected-parameters cell is not counted), with the file and line.
    with pytest.raises(book.NotebookError,
                       match=rf"(?s)cell 3 of .*01_toy\.py .*line {line}\).*RuntimeError: boom.*01_toy\.tmp\.ipynb"):
        book.run_notebook("01_toy", profile="smoke", **kw)
    assert (out / "01_toy.tmp.ipynb").exists() and (out / "01_toy.ipynb").read_text() == before

    book.write_ledger_pages(out)
    assert ": value ↑ | 3 | `smoke` | — |" in (out / "ledger.md").read_text()
    assert "profile `smoke`" in (out / "runs.md").read_text()


def test_contract_errors_are_clear(tmp_path):
    colab = book.colab_cell_source()
    good = TRIVIAL.format(colab=colab)
    cases = {
        "no_colab.py": (good.replace(colab, "import sys"), "Colab install cell"),
        "no_params.py": (good.replace('"parameters", ', ""), "tagged parameters"),
        "no_seed.py": (good.replace("seed = 0\n", ""), "does not define seed"),
        # jupytext leaves a fence whose first line ends in a backtick open until the next fence
        "fence.py": (
            good.replace("# # A trivial chapter", "# ```{note} {cite}`x`\n# text\n# ```").replace(
                "# %%\nwrite_results", "# %% [markdown]\n# ```{note}\n# b\n# ```\n\n# %%\nwrite_results"
            ),
            "cell marker",
        ),
    }
    for filename, (text, message) in cases.items():
        (tmp_path / filename).write_text(text)
        with pytest.raises(book.NotebookError, match=message):
            book.load_notebook(tmp_path / filename)
    with pytest.raises(book.NotebookError, match="available"):
        book.resolve_names(["nope"], ROOT / "notebooks")
    assert book.resolve_names(["01"], ROOT / "notebooks") == [n for n in NAMES if n.startswith("01")]


# --------------------------------------------------------------------------- the HTML book


@pytest.mark.slow
def test_book_builds_offline_without_warnings(tmp_path):
    """`jupyter-book build book -W -n --keep-going` (as `make html` and CI run it), into tmp_path."""
    exe = Path(sys.executable).with_name("jupyter-book")
    command = [str(exe) if exe.exists() else shutil.which("jupyter-book") or "jupyter-book"]
    result = subprocess.run(
        [*command, "build", str(ROOT / "book"), "--path-output", str(tmp_path), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    intro = (html / "intro.html").read_text()
    assert "Reproduction ledger" in intro and "<table" in intro
    for name in NAMES:
        page = (html / "generated" / f"{name}.html").read_text()
        assert "How this page was produced" in page, f"{name}: the run banner is missing"
        links = set(re.findall(r"https://colab\.research\.google\.com/github/[^\"']+", page))
        assert links == {book.colab_url(name)}, f"{name}: Colab button {links}"
        assert (ROOT / "book" / "generated" / f"{name}.ipynb").exists()  # what the button opens
        assert "data:image/png" in page or "<img" in page, f"{name}: no figure"
        assert "Traceback" not in page
