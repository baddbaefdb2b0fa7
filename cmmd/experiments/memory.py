"""GPU memory of training an experiment, modelled from its tensor sizes (checked against measured CUDA peaks).

:func:`estimate_gpu_memory_gb` is what each ``paper`` chapter prints before a fit and what its memory table
shows, so that a reader with a 16 GB GPU (Colab's T4) knows in advance whether a setting fits.
"""

from __future__ import annotations

import math

import torch

from cmmd.experiments.encoders import ImageCondition
from cmmd.experiments.spec import ExperimentConfig
from cmmd.flowspec import Patches
from cmmd.nets import UNet
from cmmd.sliced import DEFAULT_BLOCK

CUDA_CONTEXT_GB = 0.5  # CUDA context and cuBLAS/cuDNN workspaces (not seen by torch's allocator)
ALLOCATOR_MARGIN = 1.15  # caching-allocator fragmentation


def estimate_gpu_memory_gb(config: ExperimentConfig, *, level: int | None = None) -> float:
    r"""Peak GPU memory (GiB) of training ``config`` with :class:`cmmd.model.ConditionalMMDFlow`, from tensor sizes.

    For a level with N particles of dimension d (C·s·s), condition dimension n, D = d + n, float32:

    - **data**: N·(d_full + n), resident throughout;
    - **flow phase**: the joint particles, joint targets and their gradient (3·N·D), x_old, the velocity and
      the update temporary (3·N·d), plus one step's work: (full projections) the stacked points ((N+M)·D),
      the directions (P·D) and one block of
      the batched sort, at most ``DEFAULT_BLOCK`` entries of ~34 bytes (values, int64 permutation, counts);
      (patch projections): the cut windows of particles, targets (and y) twice (cut + pooled copy), their
      pooled features and the same sort block;
    - **network phase**: the flowed joint particles (N·D), x_old, velocity, displacement and Φ applied
      (4·N·d), plus parameters, gradients and two Adam moments (16 bytes per parameter) plus twice the
      outputs of all layers for one batch, counted by running the UNet on the ``meta`` device (no memory,
      no compute) with forward hooks. Autograd saves 0.8–0.95 times those outputs (measured with
      ``torch.autograd.graph.saved_tensors_hooks``), so the factor 2 (saved tensors and the gradients in
      flight) is an upper bound. Applying Φ in batches of ``sample_batch`` is counted without the factor 2;

    peak = (data + max(flow phase, network phase)) · 1.15 (allocator margin) + 0.5 GiB (CUDA context).
    Without ``level``, the largest level. Used by each ``paper`` chapter to state that it fits a 16 GB GPU.
    """
    indices = range(len(config.levels)) if level is None else [config.level_index(level)]
    return max(_level_bytes(config, i) for i in indices) * ALLOCATOR_MARGIN / 2**30 + CUDA_CONTEXT_GB


def _level_bytes(config: ExperimentConfig, index: int) -> float:
    f32 = 4
    n = config.n_train
    d = math.prod(config.level_shape(index))
    n_y = math.prod(config.y_shape)
    joint = d + n_y
    data = f32 * n * (math.prod(config.x_shape) + n_y)
    # flow: joint particles, joint targets, their gradient (N·D each); x_old, velocity, update temporary (N·d)
    flow = f32 * (3 * n * joint + 3 * n * d) + _flow_step_bytes(config, index)
    # network: the flowed joint particles; x_old, velocity, displacement, Φ applied (N·d)
    network = f32 * (n * joint + 4 * n * d) + _network_bytes(config, index)
    return data + max(flow, network)


def _sort_block_bytes(points: int, n_projections: int) -> float:
    entries = min(n_projections * points, max(points, DEFAULT_BLOCK))
    return 34 * entries


def _flow_step_bytes(config: ExperimentConfig, index: int) -> float:
    f32, lv = 4, config.levels[index]
    n = config.n_train
    points = 2 * n
    c, s, _ = config.level_shape(index)
    n_y = math.prod(config.y_shape)
    if not isinstance(lv.projection, Patches):
        p = getattr(lv.projection, "n_projections", 0)
        dim = c * s * s + n_y
        if p == 0:  # exact gradient: one block of pairwise distances
            return f32 * (points * dim + 2 * DEFAULT_BLOCK)
        return f32 * (points * dim + p * dim) + _sort_block_bytes(points, p)
    spec = lv.projection
    w = max(spec.windows)
    channels = c + (config.y_shape[0] if spec.y_mode == "window" else 0)
    k = channels * spec.patch_size**2 + (0 if spec.y_mode == "window" else n_y)
    windows = f32 * 2 * points * channels * w * w  # cut window and its pooled copy
    upsampled = f32 * n * c * w * w
    features = f32 * (points * k + spec.n_projections * k + n * k)
    return windows + upsampled + features + _sort_block_bytes(points, spec.n_projections)


def _network_bytes(config: ExperimentConfig, index: int) -> float:
    f32 = 4
    activations, parameters = _unet_activation_numel(config, index)
    train = f32 * (4 * parameters + 2 * config.batch_size * activations)
    apply = f32 * (parameters + config.sample_batch * activations)
    return max(train, apply)


def _unet_activation_numel(config: ExperimentConfig, index: int) -> tuple[int, int]:
    """(entries of all module outputs for ONE sample, parameter count) of the level's UNet, on the meta device."""
    c, s, _ = config.level_shape(index)
    with torch.device("meta"):  # the encoder is cheap: feed its output shape directly
        net = UNet(c, config.cond_channels, condition_encoder=ImageCondition(), **config.unet_kwargs())
    total = [0]

    def count(module, inputs, output):
        if isinstance(output, torch.Tensor) and not list(module.children()):
            total[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in net.modules()]
    x = torch.empty(1, c, s, s, device="meta")
    cond = torch.empty(1, config.cond_channels, s, s, device="meta")
    try:
        with torch.no_grad():
            net(x, cond)
    finally:
        for hook in hooks:
            hook.remove()
    return total[0], sum(p.numel() for p in net.parameters())
