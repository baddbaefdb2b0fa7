"""``python -m cmmd.bench --ct-memory``: the CT sampling memory check runs and reports its peak."""

from __future__ import annotations

import json

import pytest
import torch

from cmmd import bench


@pytest.mark.slow
def test_ct_sampling_memory_reports_a_peak_for_paper_sized_samples():
    report = bench.ct_sampling_memory(2, device=torch.device("cpu"))
    assert report["samples_shape"] == [1, 2, 1, 362, 362]
    assert report["sample_batch"] == 10 and report["n_networks"] == 2
    assert report["peak_mib"] > 0 and report["unet_parameters"] > 10**6


@pytest.mark.slow
def test_ct_memory_option_writes_its_own_json(tmp_path, capsys):
    bench.main(["--ct-memory", "--ct-samples", "1", "--out", str(tmp_path / "bench.json")])
    data = json.loads((tmp_path / "bench-ct-memory.json").read_text())
    assert data["ct_sampling_memory"]["n_samples"] == 1
    assert "peak" in capsys.readouterr().out
