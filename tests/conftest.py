"""Shared fixtures: seeded generators and an offline data directory.

The brute-force MMD² reference is :func:`cmmd.energy.brute_force_mmd2`."""

import urllib.error
import urllib.request

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def offline_data(monkeypatch, tmp_path):
    """An empty $CMMD_DATA_DIR and no network; returns the data directory (the data tests use it for every test)."""
    monkeypatch.setenv("CMMD_DATA_DIR", str(tmp_path / "data"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "data"
