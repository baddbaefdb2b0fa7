"""Shared fixtures: seeded generators and brute-force references."""

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
