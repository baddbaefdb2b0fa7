"""Chapter 6's split of the SiC slices: training tiles from the first 28 training slices, the last two held out.

The chapter cuts its training tiles from slices 1-28 only and reports on slices 29 and 30 (``slice580.png``,
``slice600.png``). In the ``cpu`` and ``paper`` profiles this is the same training set as when the tiles were
taken from all 30 slices (every k-th tile, the first N), so the held-out slices were never trained on.
"""

from __future__ import annotations

import pytest
import torch

from cmmd.experiments import get_config

SLICES, HELD_OUT, SIDE = 30, 2, 600


def chosen_tiles(n_slices: int, tile: int, n_train: int) -> torch.Tensor:
    """Indices of the chapter's training tiles among the (600 // tile)² tiles of each of ``n_slices`` slices:
    every k-th, k = ⌊tiles / N⌋, the first N of those."""
    pool = n_slices * (SIDE // tile) ** 2
    return torch.arange(pool)[:: pool // n_train][:n_train]


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_the_training_tiles_avoid_the_two_held_out_slices_and_are_unchanged(profile):
    cfg = get_config("materials-superres", profile)
    tile, per_slice = cfg.x_shape[1], (SIDE // cfg.x_shape[1]) ** 2
    kept = chosen_tiles(SLICES - HELD_OUT, tile, cfg.n_train)
    assert len(kept) == cfg.n_train
    assert torch.equal(kept, chosen_tiles(SLICES, tile, cfg.n_train))  # the same tiles as from all 30 slices
    assert int(kept.max()) // per_slice < SLICES - HELD_OUT
