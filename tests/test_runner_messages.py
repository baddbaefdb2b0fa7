"""Messages of the book runner (issue 15): a stray file in book/generated/ is named instead of stopping
every command, and a failing cell is numbered as in the source (the end-to-end run is in test_book.py)."""

from __future__ import annotations

import json

import nbformat
import pytest

from cmmd import book
from cmmd.book import runner


def _record(name: str) -> dict:
    return {"notebook": name, "ledger": [], "profile": "smoke", "hardware": "cpu", "wall_time_s": 1.0,
            "executed_at": "2024-01-01T00:00:00+00:00", "source": f"notebooks/{name}.py", "source_hash": "0" * 16}


def test_a_stray_invalid_json_is_named_and_skipped(tmp_path):
    (tmp_path / "01_good.json").write_text(json.dumps(_record("01_good")))
    (tmp_path / "notes.json").write_text("{ not json")
    with pytest.warns(UserWarning, match=r"notes\.json is not readable JSON.*Delete it"):
        records = book.read_records(tmp_path)
    assert [r["notebook"] for r in records] == ["01_good"]
    with pytest.warns(UserWarning, match=r"notes\.json"):
        book.write_ledger_pages(tmp_path)  # the runner's final step no longer raises
    assert "01_good" in (tmp_path / "runs.md").read_text()


def test_failing_cells_are_numbered_as_in_the_source():
    cells = [nbformat.v4.new_code_cell("colab"), nbformat.v4.new_code_cell("p = 1", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_markdown_cell("# text"), nbformat.v4.new_code_cell("boom()")]
    nb = nbformat.v4.new_notebook(cells=cells)
    # papermill runs [colab, parameters, injected-parameters, text, boom]: its index 4 is the source's 3.
    assert [runner._source_cell(nb, k) for k in (0, 1, 3, 4)] == [0, 1, 2, 3]
    plain = nbformat.v4.new_notebook(cells=[cells[0], cells[3]])
    assert runner._source_cell(plain, 1) == 1  # no parameters cell: nothing injected, nothing shifted


def test_the_failing_cell_line_is_found_in_the_source(tmp_path):
    src = tmp_path / "01_x.py"
    src.write_text("# %%\nimport os\n\n# %%\nvalue = 1\nboom()\n")
    assert runner._source_line(src, "value = 1\nboom()") == ", line 5"
    assert runner._source_line(src, "not in the file") == ""
