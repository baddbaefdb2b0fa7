"""Shared fixtures: seeded generators and brute-force references."""

import urllib.error
import urllib.request

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def brute_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Naive O((N+M)²) MMD² with K = −‖·‖, differentiable with the 0/0 = 0 convention at coincident points."""

    def mean_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        positive = sq > 0
        return torch.where(positive, torch.where(positive, sq, 1.0).sqrt(), 0.0).mean()

    return mean_dist(x, y) - 0.5 * mean_dist(x, x) - 0.5 * mean_dist(y, y)


@pytest.fixture
def offline_data(monkeypatch, tmp_path):
    """An empty $CMMD_DATA_DIR and no network; returns the data directory (the data tests use it for every test)."""
    monkeypatch.setenv("CMMD_DATA_DIR", str(tmp_path / "data"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "data"
