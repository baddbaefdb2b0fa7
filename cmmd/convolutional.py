r"""Sampling a learned flow fully convolutionally, on images larger than the training tiles.

A :class:`cmmd.model.ConditionalMMDFlow` whose networks are convolutional (a :class:`cmmd.nets.UNet` with a
condition encoder that scales with its input, such as ``ResizedImage(factor=4)``) can be applied to an
observation of any size: the noise z ~ U[0, 1] is drawn on the large grid and every network maps
x ← x − Φ_l(x, y) there (materials: a 600×600 test image after training on 100×100 tiles; the book's page
"Method and settings", book/method.md, §5).
:meth:`~cmmd.model.ConditionalMMDFlow.sample` checks that y has the training shape, so it does not cover this.

Borders: the networks never saw an image edge during training (the tiles were cut from larger images, and the
forward operator is periodic), so the observation is padded by reflection before sampling and the samples are
cropped back afterwards [code: ``run_material_superres.py`` pads 40 px].
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F

from cmmd._checks import check_floating, check_positive_int


class TrainedFlow(Protocol):
    """What :func:`sample_fully_convolutional` uses of a trained flow, such as a
    :class:`cmmd.model.ConditionalMMDFlow` (a layer above this module, so it is not imported here)."""

    networks: Sequence[torch.nn.Module]
    x_shape: tuple[int, ...]
    config: Any  # its ``sample_batch`` is the default batch size

    def transport(self, z: torch.Tensor, y: torch.Tensor, *, batch_size: int | None = None) -> torch.Tensor: ...


@torch.no_grad()
def sample_fully_convolutional(
    model: TrainedFlow,
    y: torch.Tensor,
    n_samples: int,
    *,
    scale: int,
    padding: int = 0,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Posterior samples on the grid of an observation of any size.

    The observation y (B, C_y, h, w) is padded by ``padding`` pixels on each side by reflection; the samples
    live on the grid (C_x, scale·(h + 2·padding), scale·(w + 2·padding)), start at z ~ U[0, 1], pass through
    x ← x − Φ_l(x, y) for l = 1..L, and are cropped by ``scale·padding`` on each side.

    Args:
        model: a trained flow with convolutional networks.
        y: observations (B, C_y, h, w), e.g. a 150×150 low-resolution image.
        n_samples: samples per observation.
        scale: side of the sample grid per pixel of y (4 for ×4 super-resolution; 1 if y lives on the grid of x).
        padding: reflection padding of y in pixels of y (the paper's 40 px at ×4 is ``padding=10``).
        generator: source of the initial noise; all of it is drawn at once, so the samples do not depend on
            ``batch_size``.
        batch_size: samples pushed through a network at once (memory bound); default ``config.sample_batch``.

    Returns:
        Tensor (B, n_samples, C_x, scale·h, scale·w).
    """
    if not model.networks:
        raise RuntimeError("sample_fully_convolutional needs a trained flow: call fit(x, y) or load(path) first")
    check_floating("y", y)
    if y.ndim != 4:
        raise ValueError(f"y must have shape (B, C, h, w), got {tuple(y.shape)}")
    check_positive_int("n_samples", n_samples)
    check_positive_int("scale", scale)
    if padding < 0 or padding >= min(y.shape[-2:]):
        raise ValueError(f"padding must be in [0, {min(y.shape[-2:])}) for y of shape {tuple(y.shape)}, got {padding}")
    batch = batch_size if batch_size is not None else model.config.sample_batch
    check_positive_int("batch_size", batch)
    parameter = next(model.networks[0].parameters())
    y = y.to(device=parameter.device, dtype=parameter.dtype)
    padded = F.pad(y, (padding,) * 4, mode="reflect") if padding else y
    b, height, width = y.shape[0], scale * padded.shape[-2], scale * padded.shape[-1]
    x = torch.rand((b * n_samples, model.x_shape[0], height, width), generator=generator,
                   dtype=parameter.dtype, device=parameter.device)
    x = model.transport(x, padded.repeat_interleave(n_samples, dim=0), batch_size=batch)
    crop = scale * padding
    x = x[..., crop : height - crop, crop : width - crop]
    return x.reshape(b, n_samples, *x.shape[1:])
