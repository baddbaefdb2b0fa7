"""Networks Φ_l(x, y) that learn one stage of the conditional MMD flow [method §3].

Contract shared by every network here: ``net(x, y)`` takes x of shape (B, *x_shape) and the condition
y of shape (B, *y_shape) and returns a tensor shaped like x (the displacement x_old − x_T of one stage).
:class:`MLP` for vectors; :class:`UNet` for images, with the condition rendered as image channels by a
condition encoder (:class:`ClassChannels`, :class:`ObservedImage`, :class:`ResizedImage`,
:class:`ImageCondition`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cmmd._checks import check_positive_int


class MLP(nn.Module):
    r"""Φ(x, y) = W_L σ(… σ(W_1 e([x, y]) + b_1) …) + b_L for vector data.

    The input embedding e is the identity, or with ``fourier_features = F > 0`` the concatenation
    e(z) = [z, sin(2π z B), cos(2π z B)] with a fixed random matrix B of shape (d + n, F) and entries
    N(0, ``fourier_scale``²) (random Fourier features, Tancik et al., NeurIPS 2020). Plain MLPs fit
    the small, fine-scaled corrections of the later flow stages badly (spectral bias); the features
    let them. B is a buffer: drawn from the global RNG at construction (as the weights are), saved
    in the ``state_dict``, and never trained.

    Args:
        x_dim: d, the size of one flattened x.
        y_dim: n, the size of one flattened y.
        hidden: width of the hidden layers.
        depth: number of hidden layers (≥ 1).
        fourier_features: F, the number of random frequencies; 0 (default) feeds [x, y] directly.
        fourier_scale: standard deviation of the frequencies, in cycles per unit of x and y.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        *,
        hidden: int = 128,
        depth: int = 3,
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (("x_dim", x_dim), ("y_dim", y_dim), ("hidden", hidden), ("depth", depth)):
            check_positive_int(name, value)
        if isinstance(fourier_features, bool) or not isinstance(fourier_features, int) or fourier_features < 0:
            raise ValueError(f"fourier_features must be an integer >= 0, got {fourier_features!r}")
        if not (isinstance(fourier_scale, (int, float)) and math.isfinite(fourier_scale) and fourier_scale > 0):
            raise ValueError(f"fourier_scale must be a finite number > 0, got {fourier_scale!r}")
        self.x_dim, self.y_dim = x_dim, y_dim
        self.fourier_features = fourier_features
        if fourier_features:
            self.register_buffer("frequencies", fourier_scale * torch.randn(x_dim + y_dim, fourier_features))
        widths = [x_dim + y_dim + 2 * fourier_features] + [hidden] * depth
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.SiLU()]
        layers.append(nn.Linear(hidden, x_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, *x_shape) with prod(x_shape) = d; y: (B, *y_shape) with prod(y_shape) = n → (B, *x_shape)."""
        flat = torch.cat([x.flatten(1), y.flatten(1)], 1)
        if self.fourier_features:
            phase = (2 * math.pi) * (flat @ self.frequencies.to(flat.dtype))
            flat = torch.cat([flat, phase.sin(), phase.cos()], 1)
        return self.layers(flat).view_as(x)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def prod(shape: tuple[int, ...]) -> int:
    """Number of entries of one sample of the given shape."""
    return math.prod(shape)


# ---------------------------------------------------------------------- conditional UNet for images
class ResBlock(nn.Module):
    """h ↦ skip(h) + conv(σ(norm(conv(σ(norm(h)))))), with σ = SiLU, norm = GroupNorm (or none), 3×3 convs."""

    def __init__(self, c_in: int, c_out: int, *, norm_groups: int | None) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, norm_groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out, norm_groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act(self.norm1(h)))
        out = self.conv2(self.act(self.norm2(out)))
        return self.skip(h) + out


def _norm(channels: int, groups: int | None) -> nn.Module:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels``; ``None``: no normalisation."""
    if groups is None:
        return nn.Identity()
    g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels)


class UNet(nn.Module):
    r"""Conditional UNet Φ(x, y) for images: the condition enters as extra input channels [method §3].

    ``net(x, y)``: x (B, x_channels, H, W), y (B, *y_shape) → (B, x_channels, H, W). The condition encoder
    renders y as channels c = E(y) (B, cond_channels, H, W), e.g. :class:`ClassChannels` (10 constant
    channels of 10·one-hot), :class:`ObservedImage` (inpainting: the zero-padded observation),
    :class:`ResizedImage` (super-resolution: the low-resolution image upsampled), :class:`ImageCondition`
    (CT: the FBP image as it is). Then

    .. math::

        \Phi(x, y) = \mathrm{head}\circ\mathrm{up}_1\circ\dots\circ\mathrm{up}_{L-1}\circ\mathrm{mid}
            \circ\mathrm{down}_{L-1}\circ\dots\circ\mathrm{stem}([x, E(y)]),

    with L = len(channel_mult) resolution levels of widths base_width·channel_mult[l]; each level has
    ``blocks`` residual blocks (GroupNorm, SiLU, 3×3 convolutions); strided 3×3 convolutions go down,
    nearest ×2 upsampling + 3×3 convolution goes up, and the skip connections are concatenated. The last
    convolution starts at zero, so an untrained Φ is 0 (the identity map x ↦ x − Φ).

    Any size works: H and W are padded (replicate) up to a multiple of 2^{L−1} and the output is cropped
    back (28×28 with L = 3 needs none, 362×362 with L = 5 pads to 368). Everything is convolutional, so a
    network trained on 100×100 tiles applies to a 600×600 image when its encoder is convolutional too
    (:class:`ResizedImage` with ``factor``). GroupNorm normalises over the whole image, which changes
    with its size: ``norm_groups=None`` removes it (as the authors' CT and materials networks did,
    ``use_norm=False`` [code]) for a network that is exactly translation-equivariant away from the borders.

    Args:
        x_channels: C of x (and of the output).
        cond_channels: channels produced by ``condition_encoder``.
        condition_encoder: callable y (B, *y_shape) → (B, cond_channels, H, W); an ``nn.Module`` is
            registered as a submodule (moved with ``.to``).
        base_width: channels of the first level.
        channel_mult: width multipliers per level, e.g. (1, 2, 4): three levels, two downsamplings.
        blocks: residual blocks per level (and in the middle, at least one).
        norm_groups: GroupNorm groups (at most this many, dividing the width); ``None`` for no normalisation.
    """

    def __init__(
        self,
        x_channels: int,
        cond_channels: int,
        *,
        condition_encoder,
        base_width: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 4),
        blocks: int = 1,
        norm_groups: int | None = 8,
    ) -> None:
        super().__init__()
        for name, value in (("x_channels", x_channels), ("base_width", base_width), ("blocks", blocks)):
            check_positive_int(name, value)
        if isinstance(cond_channels, bool) or not isinstance(cond_channels, int) or cond_channels < 0:
            raise ValueError(f"cond_channels must be an integer >= 0, got {cond_channels!r}")
        if not channel_mult or not all(type(m) is int and m >= 1 for m in channel_mult):
            raise ValueError(f"channel_mult must be a non-empty tuple of positive ints, got {channel_mult!r}")
        if norm_groups is not None:
            check_positive_int("norm_groups", norm_groups)
        if not callable(condition_encoder):
            raise ValueError("condition_encoder must be a callable y (B, *y_shape) -> (B, cond_channels, H, W)")
        self.x_channels, self.cond_channels = x_channels, cond_channels
        self.condition_encoder = condition_encoder
        self.channel_mult = tuple(channel_mult)
        widths = [base_width * m for m in channel_mult]
        self.stem = nn.Conv2d(x_channels + cond_channels, widths[0], 3, padding=1)
        self.down_blocks, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, width in enumerate(widths):
            level_blocks = [ResBlock(width, width, norm_groups=norm_groups) for _ in range(blocks)]
            self.down_blocks.append(nn.Sequential(*level_blocks))
            if level + 1 < len(widths):
                self.downsample.append(nn.Conv2d(width, widths[level + 1], 3, stride=2, padding=1))
        self.mid = nn.Sequential(*[ResBlock(widths[-1], widths[-1], norm_groups=norm_groups) for _ in range(blocks)])
        self.upsample, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for level in range(len(widths) - 2, -1, -1):
            self.upsample.append(nn.Conv2d(widths[level + 1], widths[level], 3, padding=1))
            up = [ResBlock(2 * widths[level], widths[level], norm_groups=norm_groups)]
            up += [ResBlock(widths[level], widths[level], norm_groups=norm_groups) for _ in range(blocks - 1)]
            self.up_blocks.append(nn.Sequential(*up))
        self.head = nn.Sequential(
            _norm(widths[0], norm_groups), nn.SiLU(), nn.Conv2d(widths[0], x_channels, 3, padding=1)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @property
    def multiple(self) -> int:
        """H and W are padded to a multiple of this, 2^{L−1}."""
        return 2 ** (len(self.channel_mult) - 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, x_channels, H, W), y (B, *y_shape) → (B, x_channels, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.x_channels:
            raise ValueError(f"x must have shape (B, {self.x_channels}, H, W), got {tuple(x.shape)}")
        cond = self.condition_encoder(y)
        expected = (x.shape[0], self.cond_channels, x.shape[2], x.shape[3])
        if tuple(cond.shape) != expected:
            raise ValueError(
                f"the condition encoder returned {tuple(cond.shape)} but the UNet needs {expected} "
                f"(cond_channels = {self.cond_channels}, the batch and spatial size of x)"
            )
        h = torch.cat([x, cond.to(x.dtype)], 1)
        height, width = x.shape[2:]
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        if pad_h or pad_w:
            h = F.pad(h, (0, pad_w, 0, pad_h), mode="replicate")
        h = self.stem(h)
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            h = blocks(h)
            if level < len(self.downsample):
                skips.append(h)
                h = self.downsample[level](h)
        h = self.mid(h)
        for conv, blocks in zip(self.upsample, self.up_blocks):
            h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = blocks(torch.cat([h, skips.pop()], 1))
        return self.head(h)[:, :, :height, :width]
